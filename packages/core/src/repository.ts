import { randomUUID } from "node:crypto";
import { type ApplyReport, ChangeApplier, type TaskChange } from "./changes.js";
import { checkChanges, markParsed } from "./check-changes.js";
import { loadDefaultDriver } from "./default-driver.js";
import {
  capabilitiesOf,
  type DriverCapabilities,
  type DriverDescription,
  type RestoreResult,
  type StorageDriver,
  type StoreReader,
} from "./driver.js";
import {
  ClosedError,
  CorruptDataError,
  isLogicalError,
  TaskStoreError,
  toStoreError,
  UnsupportedError,
  ValidationError,
  VersionUnsupportedError,
} from "./errors.js";
import { EventBus, type TaskEvents } from "./event-bus.js";
import { isLegacyData, migrateLegacy } from "./legacy.js";
import { type MeasuredOperation, Metrics, type MetricsSnapshot } from "./metrics.js";
import { type DriverRuntime, runtimeOf } from "./runtime-driver.js";
import {
  checkTaskId,
  isPlainObject,
  isWritableVersion,
  LIMITS,
  parseStorageData,
  parseStoredTask,
  parseVersion,
  SCHEMA_VERSION,
  type StorageData,
  type StoredTask,
} from "./schema.js";
import { SealedDriver } from "./sealed-driver.js";
import { SEALED_FIELD, Sealer, SealingError, type SealingOptions } from "./sealing.js";
import { TaskTable } from "./table.js";
import { openTelemetry } from "./telemetry.js";

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
}

export interface ApplyOptions {
  /**
   * On a storage failure, keep the change set queued and resolve with `durable: false` instead of
   * rejecting; it is written when storage works again (graceful degradation).
   */
  degrade?: boolean;
  /** A name for errors, events and metrics, like "appendOutput". */
  operation?: string;
}

export interface ApplyResult {
  /** True when the change set is in storage; false when it is queued (degraded). */
  durable: boolean;
  report: ApplyReport;
}

/** What `diagnose()` reports: facts for a person debugging a store. Never credentials. */
export interface Diagnostics {
  driver: string;
  capabilities: DriverCapabilities;
  description: DriverDescription | undefined;
  schemaVersion: string | undefined;
  taskCount: number | undefined;
  metrics: MetricsSnapshot;
}

interface QueuedChangeSet {
  changes: readonly TaskChange[];
  operation: string;
  degrade: boolean;
  /** Resolved already with `durable: false`; now only storage is waiting for it. */
  acknowledged: boolean;
  enqueuedAt: number;
  resolve(result: ApplyResult): void;
  reject(error: unknown): void;
  outcome?: { report: ApplyReport } | { error: TaskStoreError };
}

/**
 * The persistence interface: the seed's methods, plus change sets. Every write is a change set
 * applied to the current stored state: through the driver's own atomic `transact()` where it has
 * one, otherwise by lock, load, apply, save, unlock. Concurrent writes share one cycle (group
 * commit); each still resolves only once its change is durable.
 */
export class TaskRepository {
  /** Persistence and storage events: errors, recovery, migration. `TaskManager` forwards them to its bus. */
  readonly events = new EventBus<TaskEvents>();
  readonly logCap: number;
  private driverInstance: StorageDriver | undefined;
  private sealedDriver: SealedDriver | undefined;
  private runtimeFor: { driver: StorageDriver; runtime: DriverRuntime } | undefined;
  private readonly sealer: Sealer | undefined;
  private readonly driverPromise: Promise<StorageDriver> | undefined;
  private initializing: Promise<void> | undefined;
  private readonly metricsState = new Metrics();
  private readonly queue: QueuedChangeSet[] = [];
  private worker: Promise<void> | undefined;
  private io: Promise<unknown> = Promise.resolve();
  private locked: Promise<unknown> = Promise.resolve();
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay: number;
  private lastWriteError: TaskStoreError | undefined;
  private storedVersion: string | undefined;
  private closed: Promise<void> | undefined;
  private isClosed = false;
  private readonly maxBatch: number;
  /** The batch whose write failed with an unknown outcome, and the commit id its retry keeps. */
  private inDoubt: { entries: QueuedChangeSet[]; commitId: string } | undefined;
  private restoredSinceOutage = 0;
  private readonly mayDegrade: boolean;
  private readonly retryInitial: number;
  private readonly retryMax: number;

  constructor(options: TaskRepositoryOptions = {}) {
    if (options.driver) this.driverInstance = options.driver;
    else this.driverPromise = loadDefaultDriver(options.url);
    // A missing default driver is reported on first use, not as an unhandled rejection now.
    this.driverPromise?.catch(() => undefined);
    this.logCap = options.logCap ?? LIMITS.defaultLogCap;
    if (!Number.isInteger(this.logCap) || this.logCap < 1) {
      throw new ValidationError([{ path: ["logCap"], rule: "min 1", message: "must be a positive integer" }]);
    }
    this.sealer = options.sealing && (options.sealing.keys?.length || options.sealing.compress) ? new Sealer(options.sealing) : undefined;
    this.maxBatch = options.maxBatch ?? 500;
    this.mayDegrade = options.degrade ?? true;
    this.retryInitial = options.retry?.initialDelayMs ?? 50;
    this.retryMax = options.retry?.maxDelayMs ?? 5_000;
    this.retryDelay = this.retryInitial;
  }

  /** The driver, once known (the default driver is found asynchronously). */
  /** What the driver can do, decided once (see runtime-driver.ts). */
  private async runtime(): Promise<DriverRuntime> {
    const driver = await this.getDriver();
    if (this.runtimeFor?.driver !== driver) this.runtimeFor = { driver, runtime: runtimeOf(driver, driverName(driver)) };
    return this.runtimeFor.runtime;
  }

  async getDriver(): Promise<StorageDriver> {
    if (!this.driverInstance) this.driverInstance = await (this.driverPromise as Promise<StorageDriver>);
    if (!this.sealer) return this.driverInstance;
    this.sealedDriver ??= new SealedDriver(this.driverInstance, this.sealer);
    return this.sealedDriver;
  }

  /** The key id new writes are sealed with and whether values are compressed (never a key). */
  sealingInfo(): { keyId: string | undefined; compressing: boolean } | undefined {
    return this.sealer ? { keyId: this.sealer.keyId, compressing: this.sealer.compressing } : undefined;
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
  async initialize(): Promise<void> {
    if (!this.initializing) {
      this.initializing = (async () => {
        const driver = await this.getDriver();
        await this.runtime(); // a manifest its methods do not back is refused before anything else
        driver.attach?.({
          warn: (error) => {
            const wrapped = toStoreError(error, driverName(driver));
            this.record(wrapped, "background");
            this.events.emit("storage:warning", { error: wrapped });
          },
        });
        await driver.initialize();
        this.metricsState.sink ??= await openTelemetry(driverName(driver), {
          pendingChanges: () => this.pendingChanges().length,
          taskCount: () => this.metricsState.taskCount,
        });
      })();
      this.initializing.catch(() => {
        this.initializing = undefined;
      });
    }
    return this.initializing;
  }

  // -------------------------------------------------------------------------------------------
  // The seed's methods

  /** Every task in the store. A legacy store is migrated first; an unreadable one is recovered from its backup. */
  async loadAll(): Promise<StoredTask[]> {
    const data = await this.read();
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
    return this.withLock(async () => this.migrateLocked());
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
    return new Promise((resolve, reject) => {
      this.queue.push({
        changes: checked,
        operation: options.operation ?? "write",
        degrade: (options.degrade ?? false) && this.mayDegrade,
        acknowledged: false,
        enqueuedAt: performance.now(),
        resolve,
        reject,
      });
      this.kick();
    });
  }

  /** Change sets accepted in degraded mode and not yet durable, oldest first. */
  pendingChanges(): (readonly TaskChange[])[] {
    return this.queue.filter((entry) => entry.acknowledged).map((entry) => entry.changes);
  }

  /**
   * Every task in the store, plus the change sets queued but not yet written, taken while no
   * write is in flight: replaying `queued` over `tasks` gives exactly what this repository has
   * accepted, with nothing counted twice or missed. This is what `TaskManager.refresh()` uses.
   */
  async snapshot(): Promise<{ tasks: StoredTask[]; queued: (readonly TaskChange[])[] }> {
    return this.serial(async () => ({ tasks: await this.loadAll(), queued: this.queue.map((entry) => entry.changes) }));
  }

  /** Waits until every accepted change is durable; throws the storage error when it cannot be written now. */
  async flush(): Promise<void> {
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    if (this.queue.length === 0 && !this.worker) return;
    this.kick();
    while (this.worker) await this.worker;
    if (this.queue.length > 0) {
      // The attempt failed; retries go on in the background.
      throw this.lastWriteError ?? new ClosedError("storage");
    }
  }

  // -------------------------------------------------------------------------------------------
  // Backup, recovery, diagnostics

  /** Makes a restorable copy of the store (what `restore()` brings back). */
  async backup(): Promise<void> {
    await this.initialize();
    const driver = await this.getDriver();
    // Read first: an unreadable store is recovered (or refused) here, so a backup never copies a
    // damaged store over the last good copy, whatever the driver checks itself.
    await this.read();
    await driver.backup();
    this.metricsState.lastBackupAt = Date.now();
  }

  /** Moves the current store aside and restores the last backup. */
  async restore(): Promise<RestoreResult> {
    await this.initialize();
    const driver = await this.getDriver();
    const { restore } = await this.runtime();
    if (!restore) throw new UnsupportedError(`${driverName(driver)}: this driver cannot restore a backup`);
    return this.withLock(() => restore());
  }

  /** Calls `listener` when another instance changes the store, if the driver can tell. Returns an unsubscribe function. */
  async watch(listener: () => void): Promise<() => void> {
    const { watch } = await this.runtime();
    if (!watch) return () => undefined;
    await this.initialize();
    return watch(listener);
  }

  /** Counts, latencies and errors so far. */
  metrics(): MetricsSnapshot {
    return this.metricsState.snapshot(this.pendingChanges().length);
  }

  /** Everything `taskstore diagnose --persistence` shows. Reads the store to count its tasks. */
  async diagnose(): Promise<Diagnostics> {
    const driver = await this.getDriver();
    let description: DriverDescription | undefined;
    try {
      await this.initialize();
      description = await driver.describe?.();
      if (description?.sizeBytes !== undefined) this.metricsState.storeSizeBytes = description.sizeBytes;
      if (description?.lastBackupAt !== undefined) this.metricsState.lastBackupAt = description.lastBackupAt;
      await this.read();
    } catch (error) {
      this.record(toStoreError(error, `${driverName(driver)}: diagnose`), "diagnose");
    }
    return {
      driver: driverName(driver),
      capabilities: capabilitiesOf(driver),
      description,
      schemaVersion: this.storedVersion,
      taskCount: this.metricsState.taskCount,
      metrics: this.metrics(),
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
      if (this.retryTimer) clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      const driver = this.driverInstance;
      try {
        await driver?.close?.();
      } catch (error) {
        failure ??= error; // a flush failure says more: nothing pending was written
      }
      if (failure) throw failure;
    })();
    return this.closed;
  }

  // -------------------------------------------------------------------------------------------
  // Reading

  /** Loads and interprets the store: migrates legacy data, recovers an unreadable store. */
  private async read(): Promise<StorageData> {
    this.ensureOpen();
    await this.initialize();
    const driver = await this.getDriver();
    const raw = await this.metricsState.time("load", () => this.loadRaw(driver));
    const interpreted = this.interpret(raw);
    if (interpreted.kind === "ok") return this.loaded(interpreted.data);
    // Legacy data or an unreadable store: fix it under the lock, after looking again.
    return this.withLock(async () => this.loaded(await this.readLocked()));
  }

  /** Reads while holding the lock, migrating or recovering as needed. */
  private async readLocked(): Promise<StorageData> {
    const driver = await this.getDriver();
    const raw = await this.metricsState.time("load", () => this.loadRaw(driver));
    const interpreted = this.interpret(raw);
    switch (interpreted.kind) {
      case "ok":
        return interpreted.data;
      case "legacy":
        await this.migrateLocked(raw);
        return this.interpretOrThrow(await this.loadRaw(driver));
      case "corrupt":
        return this.recoverLocked(interpreted.reason);
    }
  }

  private async loadRaw(driver: StorageDriver): Promise<unknown> {
    try {
      return await driver.loadData();
    } catch (error) {
      const wrapped = toStoreError(error, `${driverName(driver)}: load`);
      // A CorruptDataError from the driver goes to recovery; anything else is a failure to report.
      if (wrapped.code === "CORRUPT_DATA") return new CorruptMarker(wrapped);
      this.record(wrapped, "load");
      throw wrapped;
    }
  }

  private interpret(raw: unknown): { kind: "ok"; data: StorageData } | { kind: "legacy" } | { kind: "corrupt"; reason: TaskStoreError } {
    if (raw instanceof CorruptMarker) return { kind: "corrupt", reason: raw.error };
    if (isLegacyData(raw)) return { kind: "legacy" };
    // A newer major version is read as it is, best effort, and never written or "recovered".
    const version = isPlainObject(raw) && typeof raw.version === "string" ? raw.version : undefined;
    const parsedVersion = version ? parseVersion(version) : undefined;
    if (version && parsedVersion && !isWritableVersion(version) && Array.isArray((raw as { tasks?: unknown }).tasks)) {
      return { kind: "ok", data: readNewerMajor(raw as Record<string, unknown>, version) };
    }
    let data: StorageData;
    try {
      data = parseStorageData(raw);
    } catch (error) {
      return {
        kind: "corrupt",
        reason: new CorruptDataError(`the store fails the schema: ${(error as Error).message}`, { cause: error }),
      };
    }
    if (!this.sealer) refuseSealed(data.tasks);
    return { kind: "ok", data };
  }

  private interpretOrThrow(raw: unknown): StorageData {
    const interpreted = this.interpret(raw);
    if (interpreted.kind === "ok") return interpreted.data;
    if (interpreted.kind === "corrupt") throw interpreted.reason;
    throw new CorruptDataError("the store is still in the legacy format after migration");
  }

  private loaded(data: StorageData): StorageData {
    this.storedVersion = data.version;
    this.metricsState.taskCount = data.tasks.length;
    return data;
  }

  /** Converts the legacy store in place. Caller holds the lock. */
  private async migrateLocked(known?: unknown): Promise<{ migrated: number }> {
    const driver = await this.getDriver();
    const raw = known ?? (await driver.loadData());
    if (!isLegacyData(raw)) return { migrated: 0 };
    await driver.backup(); // the original, kept
    const data = migrateLegacy(raw);
    await this.metricsState.time("save", () => driver.saveData(data));
    this.events.emit("storage:migrated", { tasks: data.tasks.length });
    return { migrated: data.tasks.length };
  }

  /** Moves an unreadable store aside and restores its backup. Caller holds the lock. */
  private async recoverLocked(reason: TaskStoreError): Promise<StorageData> {
    const driver = await this.getDriver();
    this.record(reason, "load");
    const { restore } = await this.runtime();
    if (!restore) {
      throw new CorruptDataError(
        `${driverName(driver)}: the store cannot be read and the driver cannot restore a backup: ${reason.message}`,
        {
          cause: reason,
        },
      );
    }
    const result = await restore();
    const data = this.interpretOrThrow(await this.loadRaw(driver));
    this.events.emit("storage:recovered", { reason, result });
    return data;
  }

  /**
   * Runs `work` holding the driver's lock. Sections of this repository take turns first: a
   * driver's lock is per instance (a second acquireLock() by its holder may return at once), so
   * without the turn a recovery and a restore in one process could both "hold" it and the first
   * release would free it under the second.
   */
  private withLock<T>(work: () => Promise<T>): Promise<T> {
    const section = async () => {
      await this.initialize();
      const driver = await this.getDriver();
      await driver.acquireLock();
      try {
        return await work();
      } finally {
        await driver.releaseLock().catch((error) => this.record(toStoreError(error, `${driverName(driver)}: releaseLock`), "releaseLock"));
      }
    };
    const next = this.locked.then(section, section);
    this.locked = next.catch(() => undefined);
    return next;
  }

  // -------------------------------------------------------------------------------------------
  // Writing

  private kick(): void {
    if (this.worker || this.queue.length === 0) return;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    this.worker = this.drain();
  }

  /** Writes queued change sets in batches until the queue is empty or storage fails. */
  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        // A batch whose write failed is retried as it was (less what was rejected), under the
        // same commit id, never merged with newer change sets: its commit may have landed.
        const doubt = this.inDoubt?.entries.filter((entry) => this.queue.includes(entry));
        const batch = doubt && doubt.length > 0 ? doubt : this.queue.slice(0, this.maxBatch);
        const commitId = doubt && doubt.length > 0 ? (this.inDoubt as { commitId: string }).commitId : randomUUID();
        this.inDoubt = undefined;
        for (const entry of batch) entry.outcome = undefined;
        let failure: TaskStoreError | undefined;
        try {
          await this.initialize();
          await this.serial(() => this.metricsState.time("save", () => this.writeBatch(batch, commitId)));
        } catch (error) {
          failure = toStoreError(error, `${driverName(this.driverInstance)}: write`);
        }
        // A logical failure of the whole write (a store this version must not write, a server of
        // the wrong kind) fails the batch for good. Anything else, including a CONFLICT of the
        // whole write (contention the driver's retries could not outlast), is retried like an
        // outage, keeping the queued change sets rather than dropping them. A change set's own
        // refusal (its task is gone, its id exists) is per entry, below.
        if (failure && (!isLogicalError(failure) || failure.code === "CONFLICT")) {
          this.inDoubt = { entries: batch, commitId };
          this.storageFailed(batch, failure);
          return;
        }
        for (const entry of batch) {
          const at = this.queue.indexOf(entry);
          if (at >= 0) this.queue.splice(at, 1);
        }
        // Counted across batches: a batch in doubt is written alone before the rest.
        for (const entry of batch) {
          const outcome = failure ? { error: failure } : entry.outcome;
          if (!outcome) continue;
          if ("error" in outcome) {
            this.record(outcome.error, entry.operation);
            if (entry.acknowledged) this.events.emit("persistence:conflict", { error: outcome.error, operation: entry.operation });
            else entry.reject(outcome.error);
          } else if (entry.acknowledged) {
            this.restoredSinceOutage++;
          } else {
            this.metricsState.record(kindOf(entry.changes), performance.now() - entry.enqueuedAt);
            entry.resolve({ durable: true, report: outcome.report });
          }
        }
        if (this.restoredSinceOutage > 0 && !this.queue.some((entry) => entry.acknowledged)) {
          const restored = this.restoredSinceOutage;
          this.restoredSinceOutage = 0;
          this.retryDelay = this.retryInitial;
          this.lastWriteError = undefined;
          this.events.emit("persistence:restored", { written: restored });
        }
      }
    } finally {
      // Cleared in the same turn as the loop's last look at the queue, with no await between:
      // a change set queued by a caller that the last resolve() woke finds no worker and
      // starts one. (Clearing it in a later .finally() left such a change set stranded.)
      this.worker = undefined;
    }
  }

  private storageFailed(batch: QueuedChangeSet[], error: TaskStoreError): void {
    this.lastWriteError = error;
    const operations = [...new Set(batch.map((entry) => entry.operation))].join(", ");
    this.record(error, operations);
    for (const entry of batch) this.metricsState.record(kindOf(entry.changes), performance.now() - entry.enqueuedAt, true);
    // Every waiting change set learns of the failure now, not only the batch: one queued behind a
    // batch in doubt (retried alone, see drain) would otherwise wait for storage to come back.
    for (const entry of [...this.queue]) {
      if (!entry.degrade) {
        this.queue.splice(this.queue.indexOf(entry), 1);
        entry.reject(error);
      } else if (!entry.acknowledged) {
        entry.acknowledged = true;
        entry.resolve({ durable: false, report: { dropped: new Map(), removed: [], statusFrom: new Map() } });
      }
    }
    const pending = this.queue.filter((entry) => entry.acknowledged).length;
    this.events.emit("persistence:error", { error, operation: operations, pending });
    if (this.queue.length > 0 && !this.isClosed) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.kick();
      }, this.retryDelay);
      this.retryTimer.unref();
      this.retryDelay = Math.min(this.retryDelay * 2, this.retryMax);
    }
  }

  /** One write cycle for a batch: each change set's outcome is recorded on its entry. */
  private async writeBatch(batch: QueuedChangeSet[], commitId: string): Promise<void> {
    const driver = await this.getDriver();
    const options = { logCap: this.logCap };
    const applyAll = async (applier: ChangeApplier): Promise<number> => {
      let applied = 0;
      for (const entry of batch) {
        try {
          entry.outcome = { report: await applier.apply(entry.changes) };
          applied++;
        } catch (error) {
          if (error instanceof VersionUnsupportedError) throw error;
          if (!isLogicalError(error)) throw error;
          entry.outcome = { error: error as TaskStoreError };
        }
      }
      return applied;
    };

    const { transact } = await this.runtime();
    if (transact) {
      const attempt = () =>
        transact(
          async (stored) => {
            for (const entry of batch) entry.outcome = undefined;
            const reader = this.sealer ? stored : refusingSealed(stored);
            const applier = new ChangeApplier(reader, options);
            await applyAll(applier);
            return applier.writeSet();
          },
          { commitId },
        );
      try {
        await attempt();
      } catch (error) {
        // The store was damaged (or is legacy data) since it was last read: recover or
        // migrate it the way a load does, then write. Without a usable backup this throws.
        if (!TaskStoreError.hasCode(error, "CORRUPT_DATA")) throw error;
        await this.withLock(async () => this.loaded(await this.readLocked()));
        await attempt();
      }
      return;
    }

    await this.withLock(async () => {
      const data = await this.readLocked();
      // The last commit ids ride in the store's metadata: a retry of a batch whose save did land
      // (its reply lost) finds its id there and is not applied twice.
      const seen = (data.metadata as { commitIds?: unknown }).commitIds;
      const landed = Array.isArray(seen) ? seen.filter((id): id is string => typeof id === "string") : [];
      if (landed.includes(commitId)) {
        for (const entry of batch) entry.outcome = { report: { dropped: new Map(), removed: [], statusFrom: new Map() } };
        this.loaded(data);
        return;
      }
      const table = TaskTable.fromData(data);
      const applier = new ChangeApplier(table.reader(), options);
      if ((await applyAll(applier)) === 0) return;
      table.apply(applier.writeSet());
      const next = table.toData();
      (next.metadata as { commitIds?: string[] }).commitIds = [...landed, commitId].slice(-COMMIT_IDS_KEPT);
      await driver.saveData(next);
      this.loaded(next);
    });
  }

  /** Runs `work` when no write batch or snapshot is in flight. */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.io.then(work, work);
    this.io = next.catch(() => undefined);
    return next;
  }

  private record(error: TaskStoreError, operation: string): void {
    this.metricsState.recordError(error, operation);
  }

  private ensureOpen(): void {
    if (this.isClosed) throw new ClosedError("the repository");
  }
}

/** Without sealing configured, a sealed task is one this process cannot read: `ENCRYPTION`, nothing written. */
function refuseSealed(tasks: readonly { id: string }[]): void {
  for (const task of tasks) {
    if ((task as Record<string, unknown>)[SEALED_FIELD] !== undefined) throw sealedWithoutKeys(task.id);
  }
}

function refusingSealed(reader: StoreReader): StoreReader {
  return {
    version: () => reader.version(),
    get: async (id) => {
      const head = await reader.get(id);
      if (head && (head as Record<string, unknown>)[SEALED_FIELD] !== undefined) throw sealedWithoutKeys(id);
      return head;
    },
  };
}

function sealedWithoutKeys(id: string): SealingError {
  return new SealingError(
    `task ${id} is sealed (encrypted or compressed) and this repository has no sealing configured: give it the keys (sealing: { keys }, TASKSTORE_KEY or TASKSTORE_KEY_FILE); nothing was written`,
  );
}

/**
 * A store of a newer major version, read as far as this version understands it: each task must
 * still have the shape this version reads (unknown fields kept), or the read fails with
 * VERSION_UNSUPPORTED. Never CORRUPT_DATA: recovery would put an older backup over the newer store.
 */
function readNewerMajor(raw: Record<string, unknown>, version: string): StorageData {
  try {
    const parsed = parseStorageData({ ...raw, version: SCHEMA_VERSION });
    parsed.version = version;
    return parsed;
  } catch (error) {
    throw new VersionUnsupportedError(version, SCHEMA_VERSION, { unreadable: (error as Error).message, cause: error });
  }
}

/** How many commit ids a store written through `saveData()` keeps in its metadata. */
const COMMIT_IDS_KEPT = 16;

/** Marks a driver's CorruptDataError as data for `interpret`, so recovery can handle it. */
class CorruptMarker {
  constructor(readonly error: TaskStoreError) {}
}

function kindOf(changes: readonly TaskChange[]): MeasuredOperation {
  if (changes.some((change) => change.type === "create")) return "create";
  if (changes.some((change) => change.type === "remove")) return "delete";
  return "update";
}

function driverName(driver: StorageDriver | undefined): string {
  return driver?.name ?? driver?.constructor?.name ?? "driver";
}
