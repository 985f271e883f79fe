import type { DriverContext, DriverDescription, RestoreResult, StorageDriver, StoreReader, WriteSet } from "./driver.js";
import type { LogEntry, StorageData, StoredTask, TaskBody, TaskHead } from "./schema.js";
import type { Sealer } from "./sealing.js";

/**
 * A driver seen through a `Sealer`: what goes in is sealed, what comes out is opened, everything
 * else passes through to the driver it wraps (looked up at each call, so a wrapper put on the
 * inner driver later still sees every call).
 */
export class SealedDriver implements StorageDriver {
  readonly name: string | undefined;
  readonly capabilities: StorageDriver["capabilities"];
  readonly specificationVersion: string | undefined;
  transact?: StorageDriver["transact"];
  restore?: () => Promise<RestoreResult>;
  watch?: (listener: () => void) => (() => void) | Promise<() => void>;
  describe?: () => Promise<DriverDescription>;
  attach?: (context: DriverContext) => void;
  close?: () => Promise<void>;

  constructor(
    readonly inner: StorageDriver,
    /** What seals and opens this driver's values (incremental backups seal their point files with it). */
    readonly sealer: Sealer,
  ) {
    this.name = inner.name ?? inner.constructor?.name;
    this.capabilities = inner.capabilities;
    this.specificationVersion = inner.specificationVersion;
    if (inner.transact) {
      this.transact = (work, options) =>
        (this.inner.transact as NonNullable<StorageDriver["transact"]>).call(
          this.inner,
          async (reader) => this.sealWrites(await work(this.openingReader(reader))),
          options,
        );
    }
    if (inner.restore) this.restore = () => (this.inner.restore as () => Promise<RestoreResult>).call(this.inner);
    if (inner.watch) this.watch = (listener) => (this.inner.watch as NonNullable<StorageDriver["watch"]>).call(this.inner, listener);
    if (inner.describe) this.describe = () => (this.inner.describe as () => Promise<DriverDescription>).call(this.inner);
    if (inner.attach) this.attach = (context) => (this.inner.attach as (c: DriverContext) => void).call(this.inner, context);
    if (inner.close) this.close = () => (this.inner.close as () => Promise<void>).call(this.inner);
  }

  initialize(): Promise<void> {
    return this.inner.initialize();
  }

  async loadData(): Promise<StorageData> {
    const data = await this.inner.loadData();
    if (!Array.isArray((data as { tasks?: unknown }).tasks)) return data; // legacy or damaged: core decides
    const sealer = this.sealer;
    const tasks = data.tasks.map((task) => {
      if (!task || typeof task !== "object") return task; // core's schema check names it
      const { logs, ...body } = task;
      const opened = sealer.openTask(body as TaskBody) as StoredTask;
      opened.logs = Array.isArray(logs) ? logs.map((entry) => sealer.openEntry(entry, task.id)) : logs;
      return opened;
    });
    return { ...data, tasks };
  }

  saveData(data: StorageData): Promise<void> {
    const sealer = this.sealer;
    const tasks = data.tasks.map((task) => {
      const { logs, ...body } = task;
      return { ...sealer.sealTask(body as TaskBody), logs: logs.map((entry) => sealer.sealEntry(entry)) } as StoredTask;
    });
    return this.inner.saveData({ ...data, tasks });
  }

  backup(): Promise<void> {
    return this.inner.backup();
  }

  acquireLock(): Promise<void> {
    return this.inner.acquireLock();
  }

  releaseLock(): Promise<void> {
    return this.inner.releaseLock();
  }

  private openingReader(reader: StoreReader): StoreReader {
    return {
      version: () => reader.version(),
      get: async (id) => {
        const head = await reader.get(id);
        return head ? (this.sealer.openTask(head) as TaskHead) : head;
      },
    };
  }

  private sealWrites(writes: WriteSet): WriteSet {
    const sealer = this.sealer;
    return {
      ...writes,
      puts: writes.puts.map((body) => sealer.sealTask(body)),
      logs: writes.logs.map((write) => ({ ...write, entries: write.entries.map((entry: LogEntry) => sealer.sealEntry(entry)) })),
    };
  }
}
