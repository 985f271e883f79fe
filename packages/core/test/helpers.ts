import type { RestoreResult, StorageData, StorageDriver, StoreReader, WriteSet } from "@taskstore/core";

/**
 * A driver wrapper that fails every storage call while `broken` is set, the way a full disk or
 * a stopped server would. Faults are injected here, around a real driver, never inside core.
 */
export class FlakyDriver implements StorageDriver {
  broken = false;
  failures = 0;
  readonly capabilities;
  transact?: (work: (reader: StoreReader) => Promise<WriteSet>) => Promise<void>;

  constructor(
    private readonly inner: StorageDriver,
    private readonly fault: () => Error = () => Object.assign(new Error("EIO: i/o error, write"), { code: "EIO" }),
  ) {
    this.capabilities = inner.capabilities;
    if (inner.transact) {
      const transact = inner.transact.bind(inner);
      this.transact = async (work) => {
        this.check();
        return transact(work);
      };
    }
  }

  private check(): void {
    if (this.broken) {
      this.failures++;
      throw this.fault();
    }
  }

  async initialize() {
    return this.inner.initialize();
  }
  async loadData(): Promise<StorageData> {
    this.check();
    return this.inner.loadData();
  }
  async saveData(data: StorageData) {
    this.check();
    return this.inner.saveData(data);
  }
  async backup() {
    this.check();
    return this.inner.backup();
  }
  async restore(): Promise<RestoreResult> {
    this.check();
    return (this.inner.restore as () => Promise<RestoreResult>)();
  }
  async acquireLock() {
    this.check();
    return this.inner.acquireLock();
  }
  async releaseLock() {
    return this.inner.releaseLock();
  }
  watch(listener: () => void) {
    return this.inner.watch?.(listener) ?? (() => undefined);
  }
  async close() {
    await this.inner.close?.();
  }
}

/** Waits until `check()` is true, polling; fails after `ms`. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
