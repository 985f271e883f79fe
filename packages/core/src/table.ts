import { patched, withoutKey } from "./copy.js";
import type { StoreReader, WriteSet } from "./driver.js";
import { newerVersion, SCHEMA_VERSION, type StorageData, type StoredTask, type TaskHead } from "./schema.js";

/**
 * Tasks held in memory, by id, in insertion order. It is the store of the plain-driver path
 * (load, apply, save), the `TaskManager`'s memory and the `MemoryStorageDriver`'s backend, so a
 * write set means the same thing everywhere.
 */
export class TaskTable {
  readonly tasks = new Map<string, StoredTask>();
  /** Unknown top-level fields of the store, kept for writing back. */
  private extra: Record<string, unknown> = {};
  private extraMeta: Record<string, unknown> = {};

  constructor(public version: string = SCHEMA_VERSION) {}

  static fromData(data: StorageData): TaskTable {
    const table = new TaskTable(data.version);
    for (const task of data.tasks) table.tasks.set(task.id, task);
    const { version: _v, tasks: _t, metadata, ...extra } = data;
    const { lastUpdated: _l, totalTasks: _n, ...extraMeta } = metadata;
    table.extra = extra;
    table.extraMeta = extraMeta;
    return table;
  }

  /** A reader over this table, for a `ChangeApplier`. */
  reader(): StoreReader {
    return {
      get: async (id) => this.head(id),
      version: async () => this.version,
    };
  }

  head(id: string): TaskHead | undefined {
    const task = this.tasks.get(id);
    if (!task) return undefined;
    const head = withoutKey(task, "logs") as TaskHead;
    head.logCount = task.logs.length;
    return head;
  }

  /** Applies a write set: puts, then logs, then deletes. Untouched tasks keep their objects. */
  apply(writes: WriteSet): void {
    for (const body of writes.puts) {
      const existing = this.tasks.get(body.id);
      this.tasks.set(body.id, patched(body as StoredTask, { logs: existing ? existing.logs : [] }));
    }
    for (const write of writes.logs) {
      const task = this.tasks.get(write.id);
      if (!task) continue;
      // In place: the table owns its task objects and hands out only copies.
      if (write.replace) task.logs = [...write.entries];
      else for (const entry of write.entries) task.logs.push(entry);
      if (task.logs.length > write.keep) task.logs.splice(0, task.logs.length - write.keep);
    }
    for (const id of writes.deletes) this.tasks.delete(id);
    if (writes.version) this.version = newerVersion(this.version, writes.version);
  }

  toData(now: number = Date.now()): StorageData {
    return {
      ...this.extra,
      version: this.version,
      tasks: [...this.tasks.values()],
      metadata: { ...this.extraMeta, lastUpdated: now, totalTasks: this.tasks.size },
    };
  }
}
