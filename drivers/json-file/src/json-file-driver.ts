import { promises as fs } from "node:fs";
import path from "node:path";
import {
  DRIVER_SPECIFICATION_VERSION,
  type DriverCapabilities,
  type DriverContext,
  type DriverDescription,
  Mutex,
  type RestoreResult,
  type StorageData,
  type StorageDriver,
  type StoreReader,
  type WriteSet,
} from "@taskstore/core";
import { append, journalFor, LostRace } from "./json-file-append.js";
import { ensureDir } from "./json-file-atomic.js";
import { compactOnClose, compactQuietly, needsRewrite, rewrite, saveLocked, shouldCompact } from "./json-file-compaction.js";
import { defaultStorePath } from "./json-file-default-path.js";
import { errors, io, tooLarge } from "./json-file-errors.js";
import { encodeRecord } from "./json-file-journal-format.js";
import { FileLock, LockLostError, readHolder } from "./json-file-lock.js";
import { type JSONFileStorageDriverOptions, settingsOf } from "./json-file-options.js";
import { autoBackup, backupLocked, restoreLocked } from "./json-file-recovery.js";
import { namesOf, removeLeftovers } from "./json-file-side-files.js";
import { type DriverState, refuseIfLockLost, refuseIrregularFiles } from "./json-file-state.js";
import { dataOf, writerOf } from "./json-file-table.js";
import { catchUp, closeView, current, lastSeq, storeBytes, type View } from "./json-file-view.js";
import { StoreWatch } from "./json-file-watch.js";

/** A write whose lock is lost this many times in a row (each time taken over while it stalled) fails. */
const MAX_LOCK_LOSSES = 5;
/** A lock kept between writes is let go after this long, and as soon as another instance waits for it. */
const LOCK_MAX_HOLD_MS = 100;

/**
 * The default driver: the store as `tasks.json` (a snapshot, a complete JSON document) plus an
 * append-only journal of the change sets committed since (`tasks.journal.jsonl`), a backup, and a
 * cross-process lock folder. A write appends one record and syncs it; readers read only what was
 * appended since they last looked; the journal is folded into `tasks.json` (atomically) when it
 * grows. See the README for the formats and the guarantees.
 */
export class JSONFileStorageDriver implements StorageDriver {
  readonly name = "json-file";
  /** The contract this driver was written against. */
  readonly specificationVersion = DRIVER_SPECIFICATION_VERSION;
  readonly capabilities: Partial<DriverCapabilities> = {
    locking: true,
    incremental: true,
    backup: true,
    restore: true,
    persistent: true,
    changeNotification: true,
  };
  /** The store file as configured (a symlink stays a symlink: writes go through to its target). */
  readonly path: string;
  readonly backupPath: string;
  readonly lockPath: string;
  readonly journalPath: string;
  /** The files, the settings, the lock and the view, as every part of the driver gets them. */
  private readonly state: DriverState;
  private readonly watching: StoreWatch;
  private context: DriverContext | undefined;
  /** The lock's generation when this instance last caught up while holding it. */
  private caughtUpUnder = -1;

  constructor(options: string | JSONFileStorageDriverOptions = {}) {
    const opts = typeof options === "string" ? { path: options } : options;
    this.path = path.resolve(opts.path ?? defaultStorePath());
    const names = namesOf(this.path);
    const { dir, stem, ext } = names;
    this.backupPath = path.join(dir, `${stem}.backup${ext}`);
    this.lockPath = path.join(dir, `.${stem}.lock`);
    this.journalPath = path.join(dir, `${stem}.journal.jsonl`);
    const settings = settingsOf(opts);
    const lock = new FileLock({
      file: this.path,
      lockPath: this.lockPath,
      timeoutMs: settings.lockTimeoutMs,
      staleMs: settings.lockExpiryMs,
      lingerMs: settings.lockLingerMs,
      maxHoldMs: LOCK_MAX_HOLD_MS,
      onCompromised: (error) => {
        // proper-lockfile throws from a timer by default, which would kill the process.
        this.warn(errors.unavailable(`the lock ${this.lockPath} was lost while held: ${error.message}`, error));
      },
    });
    this.state = {
      path: this.path,
      backupPath: this.backupPath,
      lockPath: this.lockPath,
      journalPath: this.journalPath,
      names,
      settings,
      lock,
      turn: new Mutex(),
      view: undefined,
      wroteOnce: false,
      backupSeenAt: Number.NEGATIVE_INFINITY,
      externalHold: false,
      bytesRead: { snapshot: 0, journal: 0 },
      warn: (warning) => this.warn(warning),
    };
    this.watching = new StoreWatch(this.state);
  }

  /** A problem no caller is waiting for: to core's `storage:warning`, or a process warning without core. */
  private warn(warning: Error): void {
    if (this.context) this.context.warn(warning);
    else process.emitWarning(warning);
  }

  attach(context: DriverContext): void {
    this.context = context;
  }

  async initialize(): Promise<void> {
    await refuseIrregularFiles(this.state);
    await io("prepare the folder", () => ensureDir(this.state.names.dir));
    await removeLeftovers(this.path, this.lockPath);
  }

  // -------------------------------------------------------------------------------------------
  // The six required methods

  /**
   * The whole store: `tasks.json` with the journal's records applied. Reads only what changed
   * since this instance last looked (the journal's new bytes; `tasks.json` again only when it was
   * replaced). Never takes the lock: a journal record is either whole and valid or ignored.
   */
  async loadData(): Promise<StorageData> {
    return this.state.turn.run(async () => {
      const view = await current(this.state);
      return dataOf(this.path, view);
    });
  }

  /** Replaces the whole store: a new `tasks.json` (atomically), the journal sealed and removed. */
  async saveData(data: StorageData): Promise<void> {
    let text: string;
    try {
      const { journal: _marker, ...rest } = data as StorageData & { journal?: unknown };
      text = JSON.stringify(rest);
    } catch (error) {
      // Longer than V8's longest string: far past any store this driver could read back.
      if (error instanceof RangeError) throw tooLarge(Number.POSITIVE_INFINITY, this.state.settings.maxStoreBytes, this.path);
      throw error;
    }
    const body = Buffer.from(text);
    const lastUpdated = typeof data?.metadata?.lastUpdated === "number" ? data.metadata.lastUpdated : Date.now();
    await this.underLock(() => this.state.turn.run(() => saveLocked(this.state, body, lastUpdated)));
  }

  /** Copies the store to `tasks.backup.json`. A store that does not load is never copied over a good backup. */
  async backup(): Promise<void> {
    await this.underLock(() => this.state.turn.run(() => backupLocked(this.state)));
  }

  /**
   * Keeps the current store aside and writes the backup in its place. Refused with `CORRUPT_DATA`,
   * nothing touched, when there is no usable backup, when the store is too large to have been
   * read, and when `tasks.json` is a symlink whose target does not look like a store (see
   * `looksLikeStore`): a link to some other file (a cloned repository's `tasks.json -> ~/.bashrc`)
   * is never written through. A regular file at the store path is kept aside, never deleted, and
   * so is the journal.
   */
  async restore(): Promise<RestoreResult> {
    return this.underLock(() => this.state.turn.run(() => restoreLocked(this.state)));
  }

  /**
   * Applies a change set under the lock: catches up with the journal, runs `work` against the
   * store as it is now, and appends the write set as one record, synced before this resolves.
   * The repository puts every change set waiting at that moment into one call (group commit).
   */
  async transact(work: (reader: StoreReader) => Promise<WriteSet>): Promise<void> {
    const { state } = this;
    // A lock lost while this write was under way (this process stalled past the stale period and
    // was taken over) published nothing: the write runs again, on the state as it is now.
    for (let attempt = 1; ; attempt++) {
      await this.takeLock();
      let foreign = false;
      let failed = true;
      let lost = false;
      try {
        await state.turn.run(async () => {
          // Held without a break since this instance last caught up under it: nobody else wrote
          // (a writer whose lock was taken over shows in the journal's size, checked before the append).
          if (!state.view || this.caughtUpUnder !== state.lock.generation) {
            foreign = await catchUp(state);
            this.caughtUpUnder = state.lock.generation;
          }
          await this.transactLocked(work);
        });
        failed = false;
        return;
      } catch (error) {
        lost = error instanceof LockLostError || error instanceof LostRace;
        if (!lost || attempt >= MAX_LOCK_LOSSES) throw error;
      } finally {
        // Kept for the next write only after a write that worked; a lost race may mean a lost
        // lock: taken again from scratch (and everything read again).
        await this.releaseQuietly(!failed && !lost);
        if (foreign) this.watching.notify();
      }
    }
  }

  async acquireLock(): Promise<void> {
    await this.takeLock();
    this.state.externalHold = true;
  }

  async releaseLock(): Promise<void> {
    this.state.externalHold = false;
    await this.state.lock.releaseLock();
  }

  /** Calls `listener` when another instance (in this process or another) commits: fs.watch on the folder, and a cheap poll. */
  watch(listener: () => void): () => void {
    return this.watching.add(listener);
  }

  async describe(): Promise<DriverDescription> {
    const [main, journal, backup, lockStat, holder] = await Promise.all([
      fs.stat(this.path).catch(() => undefined),
      fs.lstat(this.journalPath).catch(() => undefined),
      fs.stat(this.backupPath).catch(() => undefined),
      fs.stat(this.lockPath).catch(() => undefined),
      readHolder(this.lockPath),
    ]);
    const view = this.state.view;
    return {
      driver: this.name,
      location: this.path,
      sizeBytes: (main?.size ?? 0) + (journal?.size ?? 0),
      ...(backup ? { lastBackupAt: Math.round(backup.mtimeMs) } : {}),
      lockHolder: holder
        ? {
            pid: holder.pid,
            host: holder.host,
            since: holder.since,
            ...(holder.bootId ? { bootId: holder.bootId } : {}),
            ...(holder.pidNamespace ? { pidNamespace: holder.pidNamespace } : {}),
          }
        : lockStat
          ? { since: Math.round(lockStat.mtimeMs) }
          : null,
      backupLocation: this.backupPath,
      lockLocation: this.lockPath,
      journal: {
        location: this.journalPath,
        sizeBytes: journal?.size ?? 0,
        ...(view ? { records: view.records.length, seq: lastSeq(view) } : {}),
      },
      bytesRead: { ...this.state.bytesRead },
    };
  }

  async close(): Promise<void> {
    this.watching.stop();
    try {
      await compactOnClose(this.state);
    } finally {
      this.state.externalHold = false;
      await this.state.lock.releaseLock();
      await this.state.turn.run(async () => {
        await closeView(this.state.view);
        this.state.view = undefined;
      });
    }
  }

  // -------------------------------------------------------------------------------------------

  /** The change set against the caught-up view: one journal record, or a new `tasks.json` when the journal cannot take it. */
  private async transactLocked(work: (reader: StoreReader) => Promise<WriteSet>): Promise<void> {
    const { state } = this;
    const view = state.view as View;
    const writer = writerOf(state.path, view);
    const writes = await work(writer.table.reader());
    if (writes.puts.length === 0 && writes.logs.length === 0 && writes.deletes.length === 0 && !writes.version) return;
    refuseIfLockLost(state);
    const at = Math.max(Date.now(), view.lastUpdated);
    const record = needsRewrite(view) ? undefined : encodeRecord({ seq: lastSeq(view) + 1, at, writes });
    if (!record || storeBytes(view) + record.length > state.settings.maxStoreBytes) {
      // A store of today's format, a compaction or a torn tail to finish, or a write near the
      // size limit: the change goes into a new tasks.json.
      await rewrite(state, view, { writes, at });
      return;
    }
    await autoBackup(state, view, false, true);
    const journal = await journalFor(state, view);
    await append(state, view, journal, record, { writes, at });
    state.wroteOnce = true;
    if (shouldCompact(state, view)) await compactQuietly(state, view);
  }

  /** Runs one of the six required methods under the lock: the caller's, taken through `acquireLock()`, or its own for the call. */
  private async underLock<T>(step: () => Promise<T>): Promise<T> {
    if (this.state.externalHold) {
      // The caller's load and save belong together: with its lock lost, nothing is written for it.
      refuseIfLockLost(this.state);
      return step();
    }
    await this.takeLock();
    let failed = true;
    try {
      const result = await step();
      failed = false;
      return result;
    } finally {
      await this.releaseQuietly(!failed);
    }
  }

  /**
   * Releases the lock after a write (`soon`: kept a moment for this instance's next write, see
   * `lockLingerMs`): a release that fails does not undo the write (the folder is a leftover, removed later).
   */
  private async releaseQuietly(soon = true): Promise<void> {
    try {
      if (soon) await this.state.lock.releaseSoon();
      else await this.state.lock.releaseLock();
    } catch (error) {
      this.warn(errors.unavailable(`the lock ${this.lockPath} could not be released: ${(error as Error).message}`, error));
    }
  }

  private async takeLock(): Promise<void> {
    if (!this.state.lock.kept) await refuseIrregularFiles(this.state); // before the lock folder is made beside it
    await io("take the lock", () => this.state.lock.acquire());
  }
}
