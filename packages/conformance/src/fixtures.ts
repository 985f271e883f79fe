import type { DriverCapabilities, LogEntry, StorageData, StorageDriver, StoredTask } from "@taskstore/core";

let counter = 0;

/** A valid task with every required field; `overrides` replace fields. */
export function makeTask(overrides: Partial<StoredTask> = {}): StoredTask {
  counter++;
  const now = 1_700_000_000_000 + counter;
  return {
    id: `task-${counter}-${Math.random().toString(36).slice(2, 8)}`,
    title: `Task ${counter}`,
    status: "pending",
    progress: { percent: 0 },
    metadata: {},
    createdAt: now,
    updatedAt: now,
    children: [],
    logs: [],
    ...overrides,
  };
}

export function makeLogs(count: number, prefix = "line"): LogEntry[] {
  const types: LogEntry["type"][] = ["stdout", "stderr", "log", "error", "info", "debug"];
  return Array.from({ length: count }, (_, i) => ({
    timestamp: 1_700_000_000_000 + i,
    output: `${prefix} ${i}`,
    type: types[i % types.length] as LogEntry["type"],
    ...(i % 2 === 0 ? { source: `src-${i % 7}` } : {}),
  }));
}

/** A driver wrapper whose first `loadData()` returns `legacy` (as an old store would), recording calls. */
export class LegacyOnceDriver implements StorageDriver {
  readonly calls: string[] = [];
  private served = false;
  readonly capabilities: Partial<DriverCapabilities>;

  constructor(
    private readonly inner: StorageDriver,
    private readonly legacy: unknown,
  ) {
    // Change sets go through the plain path here so every write reads loadData(); it forwards
    // none of the optional methods, so it declares none of them.
    this.capabilities = { ...inner.capabilities, incremental: false, restore: false, changeNotification: false };
  }
  initialize() {
    return this.inner.initialize();
  }
  async loadData(): Promise<StorageData> {
    this.calls.push("loadData");
    if (!this.served) return this.legacy as StorageData;
    return this.inner.loadData();
  }
  async saveData(data: StorageData) {
    this.calls.push("saveData");
    this.served = true;
    return this.inner.saveData(data);
  }
  async backup() {
    this.calls.push("backup");
    return this.inner.backup();
  }
  acquireLock() {
    return this.inner.acquireLock();
  }
  releaseLock() {
    return this.inner.releaseLock();
  }
  async close() {
    await this.inner.close?.();
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Sorts tasks by id, for comparing stores whatever order a driver returns them in. */
export function byId(tasks: StoredTask[]): StoredTask[] {
  return [...tasks].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
