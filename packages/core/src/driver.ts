import type { LogEntry, StorageData, TaskBody, TaskHead } from "./schema.js";

/** The version of this contract. A driver may declare which one it was written against. */
export const DRIVER_SPECIFICATION_VERSION = "v1";

/**
 * What a driver can do. Every flag defaults to false; the repository and the conformance suite
 * read this and nothing else (no probing, no `instanceof`).
 */
export interface DriverCapabilities {
  /**
   * Does `acquireLock()` exclude every other driver instance on the same store, across processes?
   * That covers other instances' `transact()` too: while one instance holds the lock, their change
   * sets wait for it (bounded by the driver's lock timeout) and commit after `releaseLock()`.
   */
  locking: boolean;
  /** Does the driver apply a change set atomically itself, through `transact()`? */
  incremental: boolean;
  /** Does `backup()` make a copy of the store? */
  backup: boolean;
  /** Does `restore()` bring the last backup back (moving the current store aside, never deleting it)? */
  restore: boolean;
  /** Does the data outlive the process (and a restart of the server)? */
  persistent: boolean;
  /** Does `watch()` report changes made through other instances? */
  changeNotification: boolean;
}

export const NO_CAPABILITIES: Readonly<DriverCapabilities> = Object.freeze({
  locking: false,
  incremental: false,
  backup: false,
  restore: false,
  persistent: false,
  changeNotification: false,
});

/** The full manifest of a driver: its declared flags over all-false defaults. */
export function capabilitiesOf(driver: StorageDriver): DriverCapabilities {
  return { ...NO_CAPABILITIES, ...driver.capabilities };
}

/**
 * The storage contract. The first six methods are the required ones, all a driver must have:
 * the repository then does lock, load, apply, save, unlock for every write. The optional members
 * let a driver do better, and its `capabilities` say which it has.
 *
 * Drivers receive only valid data: ids, sizes and the schema are checked by core before a driver
 * sees them, and core validates what `loadData()` returns.
 */
export interface StorageDriver {
  /**
   * Prepares the store (folders, tables, connections). The repository calls it once; a second
   * call (another caller, a retry after a failure) must resolve and leave the store usable.
   */
  initialize(): Promise<void>;
  /**
   * Reads the whole store. An empty or missing store is `{ version: "1.0.0", tasks: [], ... }`.
   * A legacy todo array is returned as it is (core detects and migrates it). Data that cannot be
   * parsed at all throws a `CorruptDataError`. The driver reports `metadata`: `totalTasks` equal to
   * `tasks.length` and `lastUpdated` the time (ms) of the last write, also under `transact()`,
   * whose write sets carry no metadata; core relies on neither for correctness. The data is the
   * caller's: fresh objects, none the driver keeps (core checks it in place and its memory keeps
   * it), as `JSON.parse` or rows turned into objects give.
   */
  loadData(): Promise<StorageData>;
  /** Replaces the whole store with `data`, atomically: a reader sees the old or the new store. */
  saveData(data: StorageData): Promise<void>;
  /**
   * Makes a copy of the store that `restore()` (where supported) can bring back: the newest
   * backup wins. A backup of an empty store is a backup too: restoring it gives an empty store.
   * The conformance suite checks backups through `restore()`, or through the harness's
   * `readBackup()` for a driver without one: a backup nobody can check is not declared.
   */
  backup(): Promise<void>;
  /**
   * Takes the store's write lock, waiting for it; throws `LockTimeoutError` when it cannot. It
   * excludes every other instance, in any process (`capabilities.locking`). A lock whose holder
   * died (a killed process, a lost host) must be taken over after a bounded time the driver
   * documents (an expiry, a lease, a dead pid): never held forever, and never taken from a holder
   * that is alive and can still write.
   */
  acquireLock(): Promise<void>;
  /** Releases the lock if this instance holds it; otherwise does nothing (never frees another instance's lock). */
  releaseLock(): Promise<void>;

  /** What this driver supports. Missing flags are false. */
  readonly capabilities?: Partial<DriverCapabilities>;
  /**
   * The version of this contract the driver was written against (`DRIVER_SPECIFICATION_VERSION`,
   * today `"v1"`). The conformance suite checks it is one it knows.
   */
  readonly specificationVersion?: string;
  /** A short name for messages and `diagnose`, like "json-file". */
  readonly name?: string;
  /**
   * Releases connections and handles, and the lock if this instance still holds it. The
   * repository calls it once, from `close()`, after its last write.
   */
  close?(): Promise<void>;
  /**
   * The incremental extension (`capabilities.incremental`). Runs `work` against a consistent view
   * of the store and applies the `WriteSet` it returns atomically: all of it or none. When the
   * store changed underneath (a failed WATCH, a 412), the driver runs `work` again on fresh state;
   * `work` has no side effects, so that is safe.
   */
  transact?(work: (reader: StoreReader) => Promise<WriteSet>, options?: TransactOptions): Promise<void>;
  /**
   * Moves the current store aside (never deleting it) and puts the last backup in its place
   * (`capabilities.restore`). Throws `CorruptDataError` when there is no usable backup, leaving
   * the store untouched.
   */
  restore?(): Promise<RestoreResult>;
  /**
   * Calls `listener` when another instance changed the store (`capabilities.changeNotification`).
   * Returns an unsubscribe function, or a promise of it that resolves once the subscription is
   * live (a driver that subscribes over a connection of its own, PostgreSQL's LISTEN): the
   * repository waits for it before it loads, so every change made after the load read is heard.
   */
  watch?(listener: () => void): (() => void) | Promise<() => void>;
  /** Facts for `diagnose`: where the store is, its size, the last backup, who holds the lock. No credentials. */
  describe?(): Promise<DriverDescription>;
  /**
   * Called by the repository before `initialize()` with a channel for problems the driver meets
   * outside any call (a compromised lock, a lost connection). Each is emitted as a
   * `storage:warning` event and kept for `diagnose`.
   */
  attach?(context: DriverContext): void;
}

/** What the repository tells `transact()` beside the work. */
export interface TransactOptions {
  /**
   * The same for every attempt at one batch of change sets, until it is known to be written:
   * after a commit whose outcome stayed unknown (its reply lost, the server gone), the repository
   * retries exactly that batch (or a part of it) under the same id, never merged with newer
   * change sets. A driver that records the id with its commit can then tell that the batch
   * already landed and must not apply it again. A driver that ignores it is no worse than before.
   */
  commitId?: string;
}

/** What the repository hands a driver through `attach()`. */
export interface DriverContext {
  /** Reports a problem that no caller is waiting for. Never throws. */
  warn(error: Error): void;
}

/** A consistent view of the store inside `transact()`. */
export interface StoreReader {
  /** The task without its log (plus the log's length), or undefined. */
  get(id: string): Promise<TaskHead | undefined>;
  /** The stored schema version (`SCHEMA_VERSION` for a new store). */
  version(): Promise<string>;
}

/** What one transaction writes. Every task in it has passed validation. */
export interface WriteSet {
  /** Tasks to create or replace, without their logs; an existing log is kept. */
  puts: TaskBody[];
  /** Log changes, applied after `puts`. */
  logs: LogWrite[];
  /** Ids to delete with their logs. Applied after the rest. */
  deletes: string[];
  /** The version the store should record, when it changes (never downgraded). */
  version?: string;
}

/**
 * Appends `entries` to a task's log (or replaces the log when `replace`), then drops the oldest
 * entries so at most `keep` remain. Core has already counted what is dropped.
 */
export interface LogWrite {
  id: string;
  entries: LogEntry[];
  replace: boolean;
  keep: number;
}

export interface RestoreResult {
  /**
   * Where the store that was replaced was moved to, in the backend's own terms (a file path, a
   * key prefix, a schema or table name), for a person to find it; absent when there was none.
   */
  movedTo?: string;
  /** Which backup was restored, in the same terms. */
  restoredFrom: string;
}

export interface DriverDescription {
  driver: string;
  location?: string;
  sizeBytes?: number;
  lastBackupAt?: number;
  lockHolder?: { pid?: number; host?: string; since?: number; [key: string]: unknown } | null;
  [key: string]: unknown;
}
