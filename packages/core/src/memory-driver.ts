import { randomUUID } from "node:crypto";
import {
  DRIVER_SPECIFICATION_VERSION,
  type DriverCapabilities,
  type DriverDescription,
  type RestoreResult,
  type StorageDriver,
  type StoreReader,
  type WriteSet,
} from "./driver.js";
import { CorruptDataError, LockTimeoutError } from "./errors.js";
import { emptyStore } from "./kit/empty-store.js";
import { numberOption } from "./kit/options.js";
import type { StorageData } from "./schema.js";
import { TaskTable } from "./table.js";

export interface MemoryStorageDriverOptions {
  /**
   * The name of the in-memory store. Every instance opened with the same name (in one process)
   * shares it, with a lock that really excludes: that is how tests run several "processes".
   * Default: a fresh private store.
   */
  store?: string;
  /** Apply change sets through `transact()` (default) or, when false, act as a plain six-method driver. */
  incremental?: boolean;
  /** How long `acquireLock()` waits before `LockTimeoutError`. Default 30,000 ms. */
  lockTimeoutMs?: number;
}

interface Waiter {
  owner: string;
  grant(): void;
}

/** One named store: its data kept as JSON text (so nothing is shared by reference), a lock, watchers. */
class SharedStore {
  text: string | undefined;
  backupText: string | undefined;
  backupAt: number | undefined;
  /** Stores moved aside by `restore()`, never deleted. */
  readonly aside: string[] = [];
  holder: { owner: string; since: number } | undefined;
  readonly waiters: Waiter[] = [];
  readonly watchers = new Map<() => void, string>();

  acquire(owner: string, timeoutMs: number): Promise<void> {
    if (!this.holder) {
      this.holder = { owner, since: Date.now() };
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        owner,
        grant: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new LockTimeoutError(`memory: the lock was not released within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  release(owner: string): void {
    if (this.holder?.owner !== owner) return;
    const next = this.waiters.shift();
    this.holder = next ? { owner: next.owner, since: Date.now() } : undefined;
    next?.grant();
  }

  notify(except: string): void {
    for (const [listener, owner] of this.watchers) if (owner !== except) queueMicrotask(listener);
  }
}

const stores = new Map<string, SharedStore>();

/**
 * The reference driver: a store in memory, shared by name between instances, with a real lock.
 * It keeps nothing across processes. Tests use it to see what any driver must do; since tests
 * are what it is for, reaching into the store is part of its API: `writeRaw()` puts arbitrary
 * text in the store (to corrupt it), `readRaw()` and `movedAside()` show what is there.
 */
export class MemoryStorageDriver implements StorageDriver {
  readonly name = "memory";
  /** The contract this driver was written against. */
  readonly specificationVersion = DRIVER_SPECIFICATION_VERSION;
  readonly capabilities: Partial<DriverCapabilities>;
  private readonly store: SharedStore;
  private readonly storeName: string;
  private readonly owner = randomUUID();
  private readonly lockTimeoutMs: number;
  private holding = false;

  constructor(options: MemoryStorageDriverOptions = {}) {
    this.storeName = options.store ?? `private-${randomUUID()}`;
    let store = stores.get(this.storeName);
    if (!store) {
      store = new SharedStore();
      stores.set(this.storeName, store);
    }
    this.store = store;
    this.lockTimeoutMs = numberOption(options.lockTimeoutMs, "lockTimeoutMs", this.name, 30_000);
    // With `incremental: false` the manifest says so, and core never calls transact().
    const incremental = options.incremental ?? true;
    this.capabilities = { locking: true, incremental, backup: true, restore: true, persistent: false, changeNotification: true };
  }

  async initialize(): Promise<void> {}

  async loadData(): Promise<StorageData> {
    if (this.store.text === undefined) return emptyStore();
    try {
      return JSON.parse(this.store.text);
    } catch (error) {
      throw new CorruptDataError(`memory: the store "${this.storeName}" is not JSON`, { cause: error });
    }
  }

  async saveData(data: StorageData): Promise<void> {
    this.store.text = JSON.stringify(data);
    this.store.notify(this.owner);
  }

  async backup(): Promise<void> {
    this.store.backupText = this.store.text ?? JSON.stringify(emptyStore());
    this.store.backupAt = Date.now();
  }

  async restore(): Promise<RestoreResult> {
    if (this.store.backupText === undefined) throw new CorruptDataError(`memory: the store "${this.storeName}" has no backup`);
    if (this.store.text !== undefined) this.store.aside.push(this.store.text);
    this.store.text = this.store.backupText;
    this.store.notify(this.owner);
    return { movedTo: `memory:${this.storeName}#aside-${this.store.aside.length}`, restoredFrom: `memory:${this.storeName}#backup` };
  }

  async acquireLock(): Promise<void> {
    await this.store.acquire(this.owner, this.lockTimeoutMs);
    this.holding = true;
  }

  async releaseLock(): Promise<void> {
    if (!this.holding) return;
    this.holding = false;
    this.store.release(this.owner);
  }

  async transact(work: (reader: StoreReader) => Promise<WriteSet>): Promise<void> {
    await this.store.acquire(this.owner, this.lockTimeoutMs);
    try {
      const table = TaskTable.fromData(await this.loadData());
      table.apply(await work(table.reader()));
      this.store.text = JSON.stringify(table.toData());
    } finally {
      this.store.release(this.owner);
    }
    this.store.notify(this.owner);
  }

  watch(listener: () => void): () => void {
    this.store.watchers.set(listener, this.owner);
    return () => this.store.watchers.delete(listener);
  }

  async describe(): Promise<DriverDescription> {
    return {
      driver: this.name,
      location: `memory:${this.storeName}`,
      sizeBytes: this.store.text?.length ?? 0,
      ...(this.store.backupAt !== undefined ? { lastBackupAt: this.store.backupAt } : {}),
      lockHolder: this.store.holder ? { pid: process.pid, since: this.store.holder.since } : null,
    };
  }

  async close(): Promise<void> {
    await this.releaseLock();
  }

  /** Replaces the stored text as it is, valid or not. */
  writeRaw(text: string): void {
    this.store.text = text;
  }

  /** The stored text, or undefined for a store never written. */
  readRaw(): string | undefined {
    return this.store.text;
  }

  /** Stores moved aside by `restore()`, oldest first. */
  movedAside(): readonly string[] {
    return this.store.aside;
  }

  /** Forgets a named store (its data, backup and lock). */
  static drop(store: string): void {
    stores.delete(store);
  }
}
