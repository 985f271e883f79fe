import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { StorageData, StoredTask } from "@taskstore/core";
import type { BenchRow } from "./types.js";

/** The middle value (the upper middle of an even count); 0 for none. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/** Runs each bench `runs` times, alternating (a slow spell of the machine hits all alike); returns each one's median. */
export async function medians(runs: number, benches: (() => Promise<number>)[]): Promise<number[]> {
  const results: number[][] = benches.map(() => []);
  for (let i = 0; i < runs; i++) for (const [k, bench] of benches.entries()) results[k]?.push(await bench());
  return results.map(median);
}

/** The median of `runs` runs of one bench. */
export async function medianOf(runs: number, bench: () => Promise<number>): Promise<number> {
  return (await medians(runs, [bench]))[0] as number;
}

/** A bench that runs in a fresh temporary folder, deleted afterwards. */
export function inTempDir(prefix: string, bench: (dir: string) => Promise<number>): () => Promise<number> {
  return async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
    try {
      return await bench(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

/** `rounds` rounds of `width` operations started together (`one(i)`, i counting from 0); returns the elapsed ms. */
export async function timed(rounds: number, width: number, one: (i: number) => Promise<unknown>): Promise<number> {
  const start = performance.now();
  for (let r = 0; r < rounds; r++) await Promise.all(Array.from({ length: width }, (_, k) => one(r * width + k)));
  return performance.now() - start;
}

/** Operations per second of `rounds` rounds of `width` operations started together. */
export async function opsPerSec(rounds: number, width: number, one: (i: number) => Promise<unknown>): Promise<number> {
  return (rounds * width * 1000) / (await timed(rounds, width, one));
}

/** The note of a driver row: how many times faster the raw subject is. */
export function overhead(driver: number, raw: number): string {
  return `overhead ${(raw / driver).toFixed(2)}x raw`;
}

/**
 * A store's worth of tasks that were there before the benchmark started: ids `seed-000000`...,
 * each with `logs` entries ("seeded output i", then "second line"s).
 */
export function seedTasks(count: number, logs = 1): StoredTask[] {
  const now = Date.now();
  return Array.from({ length: count }, (_, i) => ({
    id: `seed-${String(i).padStart(6, "0")}`,
    title: `seeded task ${i}`,
    description: "a task that was there before the benchmark started",
    status: "running" as const,
    progress: { percent: i % 100 },
    metadata: { index: i, tags: ["bench"] },
    createdAt: now + i,
    updatedAt: now + i,
    children: [],
    logs: Array.from({ length: logs }, (_, n) =>
      n === 0
        ? { timestamp: now + i, output: `seeded output ${i}`, type: "log" as const }
        : { timestamp: now + i + 1, output: "second line", type: "stdout" as const },
    ),
  }));
}

/** A whole store of `tasks`, as saveData() takes it. */
export function storeOf(tasks: StoredTask[]): StorageData {
  return { version: "1.0.0", tasks, metadata: { lastUpdated: Date.now(), totalTasks: tasks.length } };
}

/** The body (no logs) of a task a raw client creates as operation `i`, as the drivers store it. */
export function rawTaskBody(
  i: number,
): { id: string; title: string; status: string; progress: { percent: number } } & Record<string, unknown> {
  const now = Date.now();
  return {
    id: `raw-${String(i).padStart(8, "0")}`,
    title: `bench ${i}`,
    status: "pending",
    progress: { percent: 0 },
    metadata: { i },
    createdAt: now,
    updatedAt: now,
    children: [],
  };
}

/** The three rows of a load scenario: the driver's loadData() (with its overhead), TaskManager, and the raw client. */
export function loadRows(scenario: string, driver: string, raw: string, [loadData, manager, direct]: [number, number, number]): BenchRow[] {
  return [
    { scenario, subject: `${driver} loadData()`, opsPerSec: loadData, latencyMs: 1000 / loadData, note: overhead(loadData, direct) },
    { scenario, subject: "TaskManager.loadFromRepository() (validates)", opsPerSec: manager, latencyMs: 1000 / manager },
    { scenario, subject: raw, opsPerSec: direct, latencyMs: 1000 / direct },
  ];
}
