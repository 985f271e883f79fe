import { randomUUID } from "node:crypto";
import { type ApplyReport, ChangeApplier, type TaskChange } from "./changes.js";
import { ClosedError, isLogicalError, TaskStoreError, toStoreError } from "./errors.js";
import type { MeasuredOperation } from "./metrics.js";
import { isWritableVersion } from "./schema.js";
import { refusingSealed, type StoreReading } from "./store-reading.js";
import { driverName, type StoreSession } from "./store-session.js";
import { TaskTable } from "./table.js";

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

/** How a repository's queue writes; see `TaskRepositoryOptions`. */
export interface WriteQueueOptions {
  logCap: number;
  maxBatch: number;
  /** Whether change sets that ask to degrade may (`degrade` of the repository). */
  mayDegrade: boolean;
  retryInitialMs: number;
  retryMaxMs: number;
  /** Whether the repository is closing: no retry is scheduled then. */
  isClosed: () => boolean;
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

/** The shortest time between two writes of errors on their own (see `writeErrors`). */
const ERROR_WRITE_INTERVAL_MS = 60_000;

/** How many commit ids a store written through `saveData()` keeps in its metadata. */
const COMMIT_IDS_KEPT = 16;

/**
 * The change sets waiting for storage and the one worker that writes them: in batches (group
 * commit) through the driver's `transact()`, or by lock, load, apply, save, unlock; retried with
 * backoff while storage fails (graceful degradation), a batch whose outcome is unknown retried
 * alone under its commit id; and this process's storage errors written with the store.
 */
export class WriteQueue {
  private readonly queue: QueuedChangeSet[] = [];
  private worker: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay: number;
  private lastWriteError: TaskStoreError | undefined;
  /** The batch whose write failed with an unknown outcome, and the commit id its retry keeps. */
  private inDoubt: { entries: QueuedChangeSet[]; commitId: string } | undefined;
  private restoredSinceOutage = 0;
  /** When errors were last written on their own (performance.now()). */
  private lastErrorWrite = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly session: StoreSession,
    private readonly reading: StoreReading,
    private readonly options: WriteQueueOptions,
  ) {
    this.retryDelay = options.retryInitialMs;
  }

  /** Queues checked change sets; resolves once they are durable, or queued with `degrade` when storage fails. */
  push(changes: readonly TaskChange[], options: ApplyOptions): Promise<ApplyResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({
        changes,
        operation: options.operation ?? "write",
        degrade: (options.degrade ?? false) && this.options.mayDegrade,
        acknowledged: false,
        enqueuedAt: performance.now(),
        resolve,
        reject,
      });
      this.kick();
    });
  }

  /** Change sets accepted in degraded mode and not yet durable, oldest first. */
  pending(): (readonly TaskChange[])[] {
    return this.queue.filter((entry) => entry.acknowledged).map((entry) => entry.changes);
  }

  /** Every change set not yet written, oldest first. */
  queued(): (readonly TaskChange[])[] {
    return this.queue.map((entry) => entry.changes);
  }

  /** Waits until every accepted change is durable; throws the storage error when it cannot be written now. */
  async flush(): Promise<void> {
    this.stopRetrying();
    if (this.queue.length === 0 && !this.worker) return;
    this.kick();
    while (this.worker) await this.worker;
    if (this.queue.length > 0) {
      // The attempt failed; retries go on in the background.
      throw this.lastWriteError ?? new ClosedError("storage");
    }
  }

  /** Cancels a retry waiting for its time. */
  stopRetrying(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private kick(): void {
    if (this.worker || this.queue.length === 0) return;
    this.stopRetrying();
    this.worker = this.drain();
  }

  /** Writes queued change sets in batches until the queue is empty or storage fails. */
  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        // A batch whose write failed is retried as it was (less what was rejected), under the
        // same commit id, never merged with newer change sets: its commit may have landed.
        const doubt = this.inDoubt?.entries.filter((entry) => this.queue.includes(entry));
        const batch = doubt && doubt.length > 0 ? doubt : this.queue.slice(0, this.options.maxBatch);
        const commitId = doubt && doubt.length > 0 ? (this.inDoubt as { commitId: string }).commitId : randomUUID();
        this.inDoubt = undefined;
        for (const entry of batch) entry.outcome = undefined;
        let failure: TaskStoreError | undefined;
        try {
          await this.session.initialize();
          await this.session.serial(() => this.session.metrics.time("save", () => this.writeBatch(batch, commitId)));
        } catch (error) {
          failure = toStoreError(error, `${driverName(this.session.rawDriver)}: write`);
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
            this.session.record(outcome.error, entry.operation);
            if (entry.acknowledged) this.session.events.emit("persistence:conflict", { error: outcome.error, operation: entry.operation });
            else entry.reject(outcome.error);
          } else if (entry.acknowledged) {
            this.restoredSinceOutage++;
          } else {
            this.session.metrics.record(kindOf(entry.changes), performance.now() - entry.enqueuedAt);
            entry.resolve({ durable: true, report: outcome.report });
          }
        }
        if (this.restoredSinceOutage > 0 && !this.queue.some((entry) => entry.acknowledged)) {
          const restored = this.restoredSinceOutage;
          this.restoredSinceOutage = 0;
          this.retryDelay = this.options.retryInitialMs;
          this.lastWriteError = undefined;
          this.session.events.emit("persistence:restored", { written: restored });
        }
        if (!failure) await this.writeErrors();
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
    this.session.record(error, operations);
    for (const entry of batch) this.session.metrics.record(kindOf(entry.changes), performance.now() - entry.enqueuedAt, true);
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
    this.session.events.emit("persistence:error", { error, operation: operations, pending });
    if (this.queue.length > 0 && !this.options.isClosed()) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.kick();
      }, this.retryDelay);
      this.retryTimer.unref();
      this.retryDelay = Math.min(this.retryDelay * 2, this.options.retryMaxMs);
    }
  }

  /** One write cycle for a batch: each change set's outcome is recorded on its entry. */
  private async writeBatch(batch: QueuedChangeSet[], commitId: string): Promise<void> {
    const driver = await this.session.driver();
    const options = { logCap: this.options.logCap };
    const applyAll = async (applier: ChangeApplier): Promise<number> => {
      let applied = 0;
      for (const entry of batch) {
        try {
          entry.outcome = { report: await applier.apply(entry.changes) };
          applied++;
        } catch (error) {
          // A driver built against another copy of core throws its own copy's class: the code decides.
          if (TaskStoreError.hasCode(error, "VERSION_UNSUPPORTED")) throw error;
          if (!isLogicalError(error)) throw error;
          entry.outcome = { error: error as TaskStoreError };
        }
      }
      return applied;
    };

    const { transact } = await this.session.runtime();
    if (transact) {
      const attempt = () =>
        transact(
          async (stored) => {
            for (const entry of batch) entry.outcome = undefined;
            const reader = this.session.sealer ? stored : refusingSealed(stored);
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
        await this.session.withLock(async () => this.reading.loaded(await this.reading.readLocked()));
        await attempt();
      }
      return;
    }

    await this.session.withLock(async () => {
      const data = await this.reading.readLocked();
      // The last commit ids ride in the store's metadata: a retry of a batch whose save did land
      // (its reply lost) finds its id there and is not applied twice.
      const seen = (data.metadata as { commitIds?: unknown }).commitIds;
      const landed = Array.isArray(seen) ? seen.filter((id): id is string => typeof id === "string") : [];
      if (landed.includes(commitId)) {
        for (const entry of batch) entry.outcome = { report: { dropped: new Map(), removed: [], statusFrom: new Map() } };
        this.reading.loaded(data);
        return;
      }
      const table = TaskTable.fromData(data);
      const applier = new ChangeApplier(table.reader(), options);
      if ((await applyAll(applier)) === 0) return;
      table.apply(applier.writeSet());
      const next = table.toData();
      (next.metadata as { commitIds?: string[] }).commitIds = [...landed, commitId].slice(-COMMIT_IDS_KEPT);
      // This process's storage errors ride along (see writeErrors for drivers with transact()).
      const errors = this.session.unwrittenErrors?.mergeInto(next.metadata);
      await driver.saveData(next);
      if (errors) this.session.unwrittenErrors?.written(errors);
      this.reading.loaded(next);
    });
  }

  /**
   * Writes this process's storage errors with the store, right after a write succeeded (storage
   * works again), when that write did not carry them: a driver with `transact()`, whose write
   * sets hold no metadata, or a write that changed nothing. One lock, load, save, unlock of the
   * whole store, so at most once a minute. Never throws: a failure stays in this process's
   * metrics (not among the errors to write, which would feed itself) and the errors wait.
   */
  private async writeErrors(): Promise<void> {
    const unwritten = this.session.unwrittenErrors;
    if (!unwritten || unwritten.size === 0) return;
    if (performance.now() - this.lastErrorWrite < ERROR_WRITE_INTERVAL_MS) return;
    const driver = await this.session.driver();
    const { capabilities } = await this.session.runtime();
    // Without `locking`, the lock may not keep other instances' transact() out of a whole-store save.
    if (capabilities.incremental && !capabilities.locking) return;
    this.lastErrorWrite = performance.now();
    try {
      await this.session.serial(() =>
        this.session.withLock(async () => {
          const data = await this.reading.readLocked();
          if (!isWritableVersion(data.version)) return;
          const taken = unwritten.mergeInto(data.metadata);
          await driver.saveData(data);
          unwritten.written(taken);
        }),
      );
    } catch (error) {
      this.session.metrics.recordError(toStoreError(error, `${driverName(driver)}: recording errors`), "recordErrors");
    }
  }
}

function kindOf(changes: readonly TaskChange[]): MeasuredOperation {
  if (changes.some((change) => change.type === "create")) return "create";
  if (changes.some((change) => change.type === "remove")) return "delete";
  return "update";
}
