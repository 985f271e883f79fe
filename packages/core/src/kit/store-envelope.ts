import { withoutKey } from "../copy.js";
import { SCHEMA_VERSION, type StorageData, type StoredTask, type TaskBody } from "../schema.js";

/**
 * Everything a store holds besides its tasks, as a driver keeps it beside its task records (a
 * meta table, a hash). Fields of a newer minor version are kept in `extra` and `metadataExtra`
 * and written back as they were; `totalTasks` is not kept, since it is always the task count.
 */
export interface StoreEnvelope {
  /** The schema version the store records. */
  version: string;
  /** `metadata.lastUpdated`: when the store was last written (ms). */
  lastUpdated: number;
  /** Top-level fields other than `version`, `tasks` and `metadata`. */
  extra: Record<string, unknown>;
  /** `metadata` fields other than `lastUpdated` and `totalTasks`. */
  metadataExtra: Record<string, unknown>;
}

/** Splits a whole store (what `saveData()` receives) into its envelope and its tasks. */
export function splitStore(data: StorageData): { envelope: StoreEnvelope; tasks: StoredTask[] } {
  const { version, tasks, metadata, ...extra } = data;
  const { lastUpdated, totalTasks: _count, ...metadataExtra } = metadata;
  return { envelope: { version, lastUpdated, extra, metadataExtra }, tasks };
}

/**
 * Puts a store back together from what a driver read (what `loadData()` returns). Missing parts
 * take the values of a store never written: `SCHEMA_VERSION`, `lastUpdated` 0, no extra fields.
 * `totalTasks` is the number of tasks.
 */
export function joinStore(envelope: Partial<StoreEnvelope>, tasks: StoredTask[]): StorageData {
  return {
    ...envelope.extra,
    version: envelope.version ?? SCHEMA_VERSION,
    tasks,
    metadata: { ...envelope.metadataExtra, lastUpdated: envelope.lastUpdated ?? 0, totalTasks: tasks.length },
  };
}

/** A task without its log, for a driver that stores the two apart (a shallow copy; the task is untouched). */
export function taskBody(task: StoredTask): TaskBody {
  // Not `const { logs, ...body } = task`: object rest is a slow path in V8 (see copy.ts).
  return withoutKey(task, "logs");
}
