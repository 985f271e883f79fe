import type { TaskChange } from "./changes.js";
import { checkChanges, markParsed } from "./check-changes.js";
import { capabilitiesOf, type DriverCapabilities, type DriverDescription, type RestoreResult, type StorageDriver } from "./driver.js";
import { ClosedError, toStoreError, UnsupportedError, ValidationError, VersionUnsupportedError } from "./errors.js";
import type { EventBus, TaskEvents } from "./event-bus.js";
import { isLegacyData } from "./legacy.js";
import type { MetricsSnapshot } from "./metrics.js";
import {
  checkTaskId,
  isWritableVersion,
  LIMITS,
  parseStorageData,
  parseStoredTask,
  SCHEMA_VERSION,
  type StorageData,
  type StoredTask,
} from "./schema.js";
import { Sealer, type SealingOptions } from "./sealing.js";
import { mergeStoredErrors, openedMessage, type StoredError, storedErrorsOf, UnwrittenErrors } from "./store-errors.js";
import { StoreReading } from "./store-reading.js";
import { driverName, StoreSession } from "./store-session.js";
import { type ApplyOptions, type ApplyResult, WriteQueue } from "./write-queue.js";

export type { ApplyOptions, ApplyResult } from "./write-queue.js";

/*
 * TaskRepository is the public face; the work is in one file per concept: store-session.ts (the
 * driver found, sealed, initialized once, and the lock and I/O turns), store-reading.ts (loads
 * with migration and recovery), write-queue.ts (change sets, group commit, degradation, retries)
 * and store-errors.ts (errors recorded with the store).
 */

export interface TaskRepositoryOptions {
  /**
   * The storage driver. Default: the store `url` names, else the one `TASKSTORE_URL` names (as
   * for the `taskstore` command), else the JSON file driver at its default path
   * (`@taskstore/driver-json-file`). A URL's driver package must be installed.
   */
  driver?: StorageDriver;
  /** A store URL (`file:`, `sqlite:`, `redis:`, `rediss:`, `s3:`, `postgres:`), used when no `driver` is given. */
  url?: string;
  /**
   * Encryption at rest (AES-256-GCM) and compression of task text, on any driver (see
   * `sealing.ts` and the README). `keysFromEnvironment()` reads TASKSTORE_KEY_FILE or TASKSTORE_KEY.
   * Without it, a store that holds sealed tasks fails to load with `ENCRYPTION`.
   */
  sealing?: SealingOptions;
  /** Per-task log cap; older entries beyond it are dropped and counted. Default 10,000. */
  logCap?: number;
  /** At most this many change sets share one write (group commit). Default 500. */
  maxBatch?: number;
  /** Backoff of the retries of pending changes while storage fails. Defaults 50 ms doubling to 5 s. */
  retry?: { initialDelayMs?: number; maxDelayMs?: number };
  /**
   * Whether writes that ask for graceful degradation (every `TaskManager` operation) may be
   * queued when storage fails. `false` makes every write reject with its storage error instead:
   * for a short-lived program (a CLI command) that has one deadline and must report failure, not
   * wait for the lock again when it closes. Default true.
   */
  degrade?: boolean;
  /**
   * Whether storage errors (lock timeouts, outages, corrupt data; not a caller's own mistakes)
   * are recorded with the store, in `metadata.recentErrors` (the newest 50, credentials masked),
   * so `diagnose` in every process sees them. Default true. See the README: on a driver with
   * `transact()` this costs one rewrite of the store at most once a minute while errors occur.
   */
  recordErrors?: boolean;
}

/** What `diagnose()` reports: facts for a person debugging a store. Never credentials. */
export interface Diagnostics {
  driver: string;
  capabilities: DriverCapabilities;
  description: DriverDescription | undefined;
  schemaVersion: string | undefined;
  taskCount: number | undefined;
  metrics: MetricsSnapshot;
  /**
   * The storage errors of every process that used the store, newest first (at most 50): those
   * recorded with it, and this process's not written yet. Each says which pid on which host.
   */
  recentErrors: StoredError[];
}

/**
 * The persistence interface: the six methods of the original design (`loadAll`, `loadById`,
 * `save`, `saveMany`, `remove`, `migrateFromLegacy`), plus change sets. Every write is a change
 * set applied to the current stored state: through the driver's own atomic `transact()` where it has
 * one, otherwise by lock, load, apply, save, unlock. Concurrent writes share one cycle (group
 * commit); each still resolves only once its change is durable.
 */
export class TaskRepository {
  /** Persistence and storage events: errors, recovery, migration. `TaskManager` forwards them to its bus. */
  readonly events: EventBus<TaskEvents>;
  readonly logCap: number;
  private readonly session: StoreSession;
  private readonly reading: StoreReading;
  private readonly writes: WriteQueue;
  /** Opens a recorded error's sealed message, on a repository with keys. */
  private readonly openErrorText: ((text: string) => string) | undefined;
  private closed: Promise<void> | undefined;
  private isClosed = false;

  constructor(options: TaskRepositoryOptions = {}) {
    this.logCap = options.logCap ?? LIMITS.defaultLogCap;
    if (!Number.isInteger(this.logCap) || this.logCap < 1) {
      throw new ValidationError([{ path: ["logCap"], rule: "min 1", message: "must be a positive integer" }]);
    }
    const sealer = options.sealing && (options.sealing.keys?.length || options.sealing.compress) ? new Sealer(options.sealing) : undefined;
    // On an encrypted store the messages are sealed too (the store's envelope is in clear).
    const sealErrors = sealer?.keyId ? (text: string) => sealer.sealText(text) : undefined;
    const unwritten = options.recordErrors === false ? undefined : new UnwrittenErrors(sealErrors);
    this.openErrorText = sealer ? (text: string) => sealer.openText(text, "a recorded error") : undefined;
    this.session = new StoreSession(options, sealer, unwritten, () => this.pendingChanges().length);
    this.events = this.session.events;
    this.reading = new StoreReading(this.session, () => this.ensureOpen());
    this.writes = new WriteQueue(this.session, this.reading, {
      logCap: this.logCap,
      maxBatch: options.maxBatch ?? 500,
      mayDegrade: options.degrade ?? true,
      retryInitialMs: options.retry?.initialDelayMs ?? 50,
      retryMaxMs: options.retry?.maxDelayMs ?? 5_000,
      isClosed: () => this.isClosed,
    });
  }

  /** The driver, once known (the default driver is found asynchronously); wrapped when sealing is configured. */
  async getDriver(): Promise<StorageDriver> {
    return this.session.driver();
  }

  /** The key id new writes are sealed with and whether values are compressed (never a key). */
  sealingInfo(): { keyId: string | undefined; compressing: boolean } | undefined {
    const sealer = this.session.sealer;
    return sealer ? { keyId: sealer.keyId, compressing: sealer.compressing } : undefined;
  }

  /**
   * Writes every task again with this repository's sealing: after a key rotation (new key first),
   * switching encryption or compression on or off. One atomic write of the whole store.
   */
  async reseal(): Promise<{ tasks: number }> {
    const tasks = await this.loadAll();
    if (tasks.length === 0) return { tasks: 0 };
    await this.apply(
      tasks.map((task) => ({ type: "put", task: markParsed(task) })),
      { operation: "reseal" },
    );
    return { tasks: tasks.length };
  }

  /** The driver's capabilities manifest. */
  async capabilities(): Promise<DriverCapabilities> {
    return capabilitiesOf(await this.getDriver());
  }

  /** Initializes the driver, once. A failed initialization is tried again on the next call. */
  initialize(): Promise<void> {
    return this.session.initialize();
  }

  // -------------------------------------------------------------------------------------------
  // The persistence methods of the original design

  /** Every task in the store. A legacy store is migrated first; an unreadable one is recovered from its backup. */
  async loadAll(): Promise<StoredTask[]> {
    const data = await this.reading.read();
    return data.tasks;
  }

  /** One task, or null. */
  async loadById(id: string): Promise<StoredTask | null> {
    checkTaskId(id);
    const tasks = await this.loadAll();
    return tasks.find((task) => task.id === id) ?? null;
  }

  /** Stores the task as given, replacing the task with its id. Invalid input throws `ValidationError` and writes nothing. */
  async save(task: StoredTask): Promise<void> {
    const parsed = markParsed(parseStoredTask(task, "task"));
    await this.apply([{ type: "put", task: parsed }], { operation: "save" });
  }

  /** Stores several tasks in one atomic write: all of them or, on any invalid task, none. */
  async saveMany(tasks: StoredTask[]): Promise<void> {
    if (!Array.isArray(tasks)) {
      throw new ValidationError([{ path: [], rule: "type", message: "saveMany takes an array of tasks" }]);
    }
    const parsed = tasks.map((task, i) => markParsed(parseStoredTask(task, `tasks[${i}]`)));
    if (parsed.length === 0) return;
    await this.apply(
      parsed.map((task) => ({ type: "put", task })),
      { operation: "saveMany" },
    );
  }

  /** Removes a task with its descendants, and its place among its parent's children. A missing id changes nothing. */
  async remove(id: string): Promise<void> {
    checkTaskId(id);
    await this.apply([{ type: "remove", id, at: Date.now() }], { operation: "remove" });
  }

  /**
   * Converts a legacy todo array to the current format, keeping the original through the driver's
   * `backup()`. Loading does this by itself; this method makes it explicit. Resolves with how many
   * todos were migrated (0 when the store is not legacy).
   */
  async migrateFromLegacy(): Promise<{ migrated: number }> {
    await this.initialize();
    const driver = await this.getDriver();
    const raw = await driver.loadData();
    if (!isLegacyData(raw)) return { migrated: 0 };
    return this.session.withLock(async () => this.reading.migrateLocked());
  }

  // -------------------------------------------------------------------------------------------
  // Change sets

  /**
   * Applies a change set atomically to the current stored state. Resolves once it is durable, or
   * (with `degrade`) once it is queued because storage failed. A change set the stored state
   * refuses (missing task, illegal transition, cycle) rejects and writes nothing. So does one that
   * breaks a rule of the schema (`VALIDATION`, checked before anything is queued).
   */
  apply(changes: readonly TaskChange[], options: ApplyOptions = {}): Promise<ApplyResult> {
    this.ensureOpen();
    let checked: TaskChange[];
    try {
      checked = checkChanges(changes, options.operation);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.writes.push(checked, options);
  }

  /** Change sets accepted in degraded mode and not yet durable, oldest first. */
  pendingChanges(): (readonly TaskChange[])[] {
    return this.writes.pending();
  }

  /**
   * Every task in the store, plus the change sets queued but not yet written, taken while no
   * write is in flight: replaying `queued` over `tasks` gives exactly what this repository has
   * accepted, with nothing counted twice or missed. This is what `TaskManager.refresh()` uses.
   */
  async snapshot(): Promise<{ tasks: StoredTask[]; queued: (readonly TaskChange[])[] }> {
    return this.session.serial(async () => ({ tasks: await this.loadAll(), queued: this.writes.queued() }));
  }

  /** Waits until every accepted change is durable; throws the storage error when it cannot be written now. */
  flush(): Promise<void> {
    return this.writes.flush();
  }

  // -------------------------------------------------------------------------------------------
  // Backup, recovery, diagnostics

  /** Makes a restorable copy of the store (what `restore()` brings back). */
  async backup(): Promise<void> {
    await this.initialize();
    const driver = await this.getDriver();
    // Read first: an unreadable store is recovered (or refused) here, so a backup never copies a
    // damaged store over the last good copy, whatever the driver checks itself.
    await this.reading.read();
    await driver.backup();
    this.session.metrics.lastBackupAt = Date.now();
  }

  /** Moves the current store aside and restores the last backup. */
  async restore(): Promise<RestoreResult> {
    await this.initialize();
    const driver = await this.getDriver();
    const { restore } = await this.session.runtime();
    if (!restore) throw new UnsupportedError(`${driverName(driver)}: this driver cannot restore a backup`);
    return this.session.withLock(() => restore());
  }

  /** The whole store as a load reads it (migrated or recovered as needed): what incremental backups capture. */
  async loadStore(): Promise<StorageData> {
    return this.reading.read();
  }

  /**
   * Replaces the whole store with `data` in one `saveData()` under the store's lock (a point
   * restore). `before` first gets the store as it is under that lock, to keep it; if it throws,
   * nothing is written.
   */
  async replaceStore(data: StorageData, before?: (current: StorageData) => Promise<void>): Promise<void> {
    const parsed = parseStorageData(data);
    if (!isWritableVersion(parsed.version)) throw new VersionUnsupportedError(parsed.version, SCHEMA_VERSION);
    await this.session.serial(() =>
      this.session.withLock(async () => {
        const current = await this.reading.readLocked();
        if (!isWritableVersion(current.version)) throw new VersionUnsupportedError(current.version, SCHEMA_VERSION);
        await before?.(current);
        await this.session.metrics.time("save", async () => (await this.getDriver()).saveData(parsed));
        this.reading.loaded(parsed);
      }),
    );
  }

  /** Calls `listener` when another instance changes the store, if the driver can tell. Returns an unsubscribe function. */
  async watch(listener: () => void): Promise<() => void> {
    const { watch } = await this.session.runtime();
    if (!watch) return () => undefined;
    await this.initialize();
    return await watch(listener);
  }

  /** Counts, latencies and errors so far. */
  metrics(): MetricsSnapshot {
    return this.session.metrics.snapshot(this.pendingChanges().length);
  }

  /** Everything `taskstore diagnose --persistence` shows. Reads the store to count its tasks. */
  async diagnose(): Promise<Diagnostics> {
    const driver = await this.getDriver();
    const metrics = this.session.metrics;
    let description: DriverDescription | undefined;
    let stored: StoredError[] = [];
    try {
      await this.initialize();
      description = await driver.describe?.();
      if (description?.sizeBytes !== undefined) metrics.storeSizeBytes = description.sizeBytes;
      if (description?.lastBackupAt !== undefined) metrics.lastBackupAt = description.lastBackupAt;
      stored = storedErrorsOf((await this.reading.read()).metadata);
    } catch (error) {
      this.session.record(toStoreError(error, `${driverName(driver)}: diagnose`), "diagnose");
    }
    return {
      driver: driverName(driver),
      capabilities: capabilitiesOf(driver),
      description,
      schemaVersion: this.reading.storedVersion,
      taskCount: metrics.taskCount,
      metrics: this.metrics(),
      recentErrors: mergeStoredErrors(stored, this.session.unwrittenErrors?.list() ?? [])
        .reverse()
        .map((error) => ({ ...error, message: openedMessage(error.message, this.openErrorText) })),
    };
  }

  /** Flushes, then closes the driver. Resources are released even when the flush fails (which then throws). */
  close(): Promise<void> {
    this.isClosed = true;
    this.closed ??= (async () => {
      let failure: unknown;
      try {
        await this.flush();
      } catch (error) {
        failure = error;
      }
      this.writes.stopRetrying();
      try {
        await this.session.rawDriver?.close?.();
      } catch (error) {
        failure ??= error; // a flush failure says more: nothing pending was written
      }
      if (failure) throw failure;
    })();
    return this.closed;
  }

  private ensureOpen(): void {
    if (this.isClosed) throw new ClosedError("the repository");
  }
}
