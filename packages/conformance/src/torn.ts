import type { StorageData } from "@taskstore/core";

/**
 * Why a load mixed two stores, or undefined when it is one whole store. The atomicity tests write
 * stores of `size` tasks in which every task carries the same `metadata.gen`: a load must see no
 * tasks (before the first write) or all `size` of one generation.
 */
export function tornReason(data: StorageData, size: number): string | undefined {
  const tasks = data.tasks;
  if (tasks.length === 0) return undefined;
  if (tasks.length !== size) return `a load saw ${tasks.length} tasks, expected 0 or ${size}`;
  const gens = new Set(tasks.map((task) => task.metadata.gen));
  if (gens.size !== 1) return `a load mixed generations ${[...gens].sort().join(", ")}`;
  return undefined;
}
