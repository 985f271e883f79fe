import { randomUUID } from "node:crypto";
import { type FSWatcher, promises as fs, watch as watchFolder } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import {
  ConflictError,
  CorruptDataError,
  DRIVER_SPECIFICATION_VERSION,
  type DriverCapabilities,
  type DriverContext,
  type DriverDescription,
  isLegacyData,
  isLoadableStore,
  isWritableVersion,
  parseStorageData,
  type RestoreResult,
  type StorageData,
  type StorageDriver,
  StorageUnavailableError,
  type StoreReader,
  TaskStoreError,
  TaskTable,
  ValidationError,
  type WriteSet,
} from "@taskstore/core";
import {
  codeOf,
  ensureDir,
  type FileContent,
  type FileKind,
  inspectFile,
  isSymlink,
  READ_LIMIT_BYTES,
  readRegularFile,
  readRegularFileKept,
  resolveTarget,
  typeOf,
  writeFileAtomic,
  writeFileAtomicKept,
} from "./atomic-file.js";
import { defaultStorePath } from "./default-path.js";
import { FileLock, LockLostError, readHolder } from "./file-lock.js";
import { JournalFile } from "./journal-file.js";
import {
  emptyScan,
  encodeHeader,
  encodeRecord,
  isSealed,
  type JournalScan,
  type Marker,
  markerOf,
  NO_WRITES,
  scanJournal,
  sealSnapshot,
  tornFrom,
} from "./journal-format.js";
import { keepLegacy, moveAside, namesOf, removeLeftovers, type StoreNames } from "./side-files.js";
import { StoreBytes } from "./store-bytes.js";
import { emptyData, io, looksLikeStore, parseStore } from "./store-format.js";

/** A write whose lock is lost this many times in a row (each time taken over while it stalled) fails. */
const MAX_LOCK_LOSSES = 5;

/** The default `maxStoreBytes`: 256 MiB, well below what the driver can read back (`READ_LIMIT_BYTES`, about 512 MiB). */
export const DEFAULT_MAX_STORE_BYTES = Math.min(256 * 1024 * 1024, READ_LIMIT_BYTES);

export interface JSONFileStorageDriverOptions {
  /** The store file. Default `~/.config/kilocode/tasks.json` (`$XDG_CONFIG_HOME`, `%APPDATA%` on Windows). */
  path?: string;
  /** How long `acquireLock()` waits before `LockTimeoutError`. Default 30,000 ms. */
  lockTimeoutMs?: number;
  /**
   * A lock not refreshed for this long is taken over. A holder whose process can be checked (same
   * host, boot and PID namespace) and is gone is reclaimed at once. Default 10,000 ms; at least 2,000.
   */
  staleMs?: number;
  /** The automatic backup is refreshed before a write at most this often. Default 10 minutes; 0 = before every write. */
  backupIntervalMs?: number;
  /**
   * The largest store a write may make, in bytes (of `tasks.json` once the journal is folded into
   * it). A write that would make it larger (and larger than it is now) is refused with
   * `VALIDATION` (rule `max_store_size`) and nothing is written. Default 256 MiB; at most
   * `READ_LIMIT_BYTES` (V8's longest string, about 512 MiB), since a larger file could never be read back.
   */
  maxStoreBytes?: number;
  /** The journal is folded into `tasks.json` once it is larger than this and than `compactionRatio` times `tasks.json`. Default 256 KiB. */
  compactionBytes?: number;
  /** See `compactionBytes`. Default 0.25. */
  compactionRatio?: number;
  /**
   * `close()` folds the journal into `tasks.json` when the whole store is at most this many bytes
   * and the lock is free at once. Default 64 KiB; 0: never.
   */
  compactOnCloseBytes?: number;
  /** How often `watch()` looks at the journal besides `fs.watch` (which network folders do not report). Default 250 ms. */
  watchIntervalMs?: number;
  /**
   * After a write, the lock stays held this long for this instance's next write (taking and
   * releasing it costs several file system operations): a sequential writer takes it once. It is
   * let go at once when another instance waits for it, and after 100 ms of writes all the same.
   * Default 5 ms; 0: released after every write.
   */
  lockLingerMs?: number;
}

/** A file's identity as stat reports it, to notice a `tasks.json` replaced or edited by something else. */
interface Identity {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** `tasks.json` as this instance last read (or wrote) it. */
interface Snapshot {
  /** Open while the instance holds the view: no other file can take its inode number meanwhile. */
  handle: FileHandle | undefined;
  identity: Identity | undefined;
  /** Undefined when there is no `tasks.json`. */
  bytes: Buffer | undefined;
  /** The journal that continues it. */
  marker: Marker | undefined;
  /** Whether its checksum matches: this driver wrote it and nothing changed it since (undefined: not checked yet). */
  sealed: boolean | undefined;
}

/**
 * The store as this instance knows it: `tasks.json`, the journal (pinned open), and the journal's
 * valid records that continue the snapshot. Readers and writers catch up from `scan.seen` on.
 */
interface View {
  snapshot: Snapshot;
  journal: { file: JournalFile; scan: JournalScan } | undefined;
  /** The journal continues the snapshot (its header names the snapshot's marker): its records are part of the store. */
  matches: boolean;
  /** Those records' change sets, in order (parsed once, when read). */
  records: WriteSet[];
  recordBytes: number;
  /** The time of the last write: the last record's, or the snapshot's `metadata.lastUpdated`. */
  lastUpdated: number;
  /** The store as a table, for `transact()`: built on first use, then kept up to date record by record. */
  writer: { table: TaskTable; bytes: StoreBytes } | undefined;
}

/** Another writer's record took the sequence this one was written for (it had lost its lock): the change set runs again. */
class LostRace extends ConflictError {}

const COMPACTION_BYTES = 256 * 1024;
const COMPACTION_RATIO = 0.25;
const COMPACT_ON_CLOSE_BYTES = 64 * 1024;
const LOCK_LINGER_MS = 5;
/** fs.watch events are looked at this long after the first of a burst. */
const NUDGE_DELAY_MS = 20;
/** A lock kept between writes is let go after this long, and as soon as another instance waits for it. */
const LOCK_MAX_HOLD_MS = 100;
/** How a snapshot this driver wrote ends: its marker, then the checksum. */
const MARKER_TAIL = /"journal":\{"id":"([0-9a-f-]{8,64})","seq":(\d{1,16}),"checksum":"[0-9a-f]{8}"\}\}$/;

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
  private readonly names: StoreNames;
  private readonly backupIntervalMs: number;
  private readonly maxStoreBytes: number;
  private readonly compactionBytes: number;
  private readonly compactionRatio: number;
  private readonly compactOnCloseBytes: number;
  private readonly watchIntervalMs: number;
  private readonly lingerMs: number;
  private readonly lock: FileLock;
  private context: DriverContext | undefined;
  private view: View | undefined;
  /** Every step that reads or changes the view takes its turn here. */
  private turn: Promise<unknown> = Promise.resolve();
  private wroteOnce = false;
  /** When the backup was last written or seen (its mtime), by this instance: -Infinity until then. */
  private backupSeenAt = Number.NEGATIVE_INFINITY;
  /** The lock's generation when this instance last caught up while holding it. */
  private caughtUpUnder = -1;
  /** The lock was taken through `acquireLock()` (the seed's protocol): the seed methods then run under it. */
  private externalHold = false;
  /** Bytes read from the files, for `describe()` (and the tests: a reader reads only what is new). */
  private readonly bytesRead = { snapshot: 0, journal: 0 };
  private readonly listeners = new Set<() => void>();
  private watcher: FSWatcher | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private checkAgain = false;
  private nudging = false;
  private nudgeAgain = false;

  constructor(options: string | JSONFileStorageDriverOptions = {}) {
    const opts = typeof options === "string" ? { path: options } : options;
    this.path = path.resolve(opts.path ?? defaultStorePath());
    this.names = namesOf(this.path);
    const { dir, stem, ext } = this.names;
    this.backupPath = path.join(dir, `${stem}.backup${ext}`);
    this.lockPath = path.join(dir, `.${stem}.lock`);
    this.journalPath = path.join(dir, `${stem}.journal.jsonl`);
    this.backupIntervalMs = opts.backupIntervalMs ?? 10 * 60_000;
    this.maxStoreBytes = opts.maxStoreBytes ?? DEFAULT_MAX_STORE_BYTES;
    this.compactionBytes = opts.compactionBytes ?? COMPACTION_BYTES;
    this.compactionRatio = opts.compactionRatio ?? COMPACTION_RATIO;
    this.compactOnCloseBytes = opts.compactOnCloseBytes ?? COMPACT_ON_CLOSE_BYTES;
    this.watchIntervalMs = opts.watchIntervalMs ?? 250;
    this.lingerMs = opts.lockLingerMs ?? LOCK_LINGER_MS;
    if (!Number.isSafeInteger(this.maxStoreBytes) || this.maxStoreBytes < 1 || this.maxStoreBytes > READ_LIMIT_BYTES) {
      throw new ValidationError(
        [{ path: ["maxStoreBytes"], rule: "range", message: `must be a whole number of bytes from 1 to ${READ_LIMIT_BYTES}` }],
        { subject: "json-file" },
      );
    }
    for (const [key, value] of Object.entries({
      compactionBytes: this.compactionBytes,
      compactionRatio: this.compactionRatio,
      compactOnCloseBytes: this.compactOnCloseBytes,
      watchIntervalMs: this.watchIntervalMs,
      lockLingerMs: this.lingerMs,
    })) {
      if (!Number.isFinite(value) || value < 0) {
        throw new ValidationError([{ path: [key], rule: "range", message: "must be a number of at least 0" }], { subject: "json-file" });
      }
    }
    this.lock = new FileLock({
      file: this.path,
      lockPath: this.lockPath,
      timeoutMs: opts.lockTimeoutMs ?? 30_000,
      staleMs: Math.max(opts.staleMs ?? 10_000, 2_000),
      lingerMs: this.lingerMs,
      maxHoldMs: LOCK_MAX_HOLD_MS,
      onCompromised: (error) => {
        // proper-lockfile throws from a timer by default, which would kill the process.
        this.warn(
          new StorageUnavailableError(`json-file: the lock ${this.lockPath} was lost while held: ${error.message}`, { cause: error }),
        );
      },
    });
  }

  /** A problem no caller is waiting for: to core's `storage:warning`, or a process warning without core. */
  private warn(warning: Error): void {
    if (this.context) this.context.warn(warning);
    else process.emitWarning(warning);
  }

  /** For writeFileAtomic: the write stands, but its folder could not be synced. */
  private unsynced(what: string): (error: Error) => void {
    return (error) =>
      this.warn(
        new StorageUnavailableError(
          `json-file: ${what} was written, but its folder could not be synced (${error.message}); a power cut may still undo it`,
          { cause: error },
        ),
      );
  }

  attach(context: DriverContext): void {
    this.context = context;
  }

  async initialize(): Promise<void> {
    await this.refuseIrregularFiles();
    await io("prepare the folder", () => ensureDir(this.names.dir));
    await removeLeftovers(this.path, this.lockPath);
  }

  // -------------------------------------------------------------------------------------------
  // The seed's methods

  /**
   * The whole store: `tasks.json` with the journal's records applied. Reads only what changed
   * since this instance last looked (the journal's new bytes; `tasks.json` again only when it was
   * replaced). Never takes the lock: a journal record is either whole and valid or ignored.
   */
  async loadData(): Promise<StorageData> {
    return this.inTurn(async () => {
      const view = await this.current();
      return this.dataOf(view);
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
      if (error instanceof RangeError) throw this.tooLarge(Number.POSITIVE_INFINITY);
      throw error;
    }
    const body = Buffer.from(text);
    const lastUpdated = typeof data?.metadata?.lastUpdated === "number" ? data.metadata.lastUpdated : Date.now();
    await this.underLock(() => this.inTurn(() => this.saveLocked(body, lastUpdated)));
  }

  /** Copies the store to `tasks.backup.json`. A store that does not load is never copied over a good backup. */
  async backup(): Promise<void> {
    await this.underLock(() => this.inTurn(() => this.backupLocked()));
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
    return this.underLock(() => this.inTurn(() => this.restoreLocked()));
  }

  /**
   * Applies a change set under the lock: catches up with the journal, runs `work` against the
   * store as it is now, and appends the write set as one record, synced before this resolves.
   * The repository puts every change set waiting at that moment into one call (group commit).
   */
  async transact(work: (reader: StoreReader) => Promise<WriteSet>): Promise<void> {
    // A lock lost while this write was under way (this process stalled past the stale period and
    // was taken over) published nothing: the write runs again, on the state as it is now.
    for (let attempt = 1; ; attempt++) {
      await this.takeLock();
      let foreign = false;
      let failed = true;
      let lost = false;
      try {
        await this.inTurn(async () => {
          // Held without a break since this instance last caught up under it: nobody else wrote
          // (a writer whose lock was taken over shows in the journal's size, checked before the append).
          if (!this.view || this.caughtUpUnder !== this.lock.generation) {
            foreign = await this.catchUp();
            this.caughtUpUnder = this.lock.generation;
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
        if (foreign) this.notify();
      }
    }
  }

  async acquireLock(): Promise<void> {
    await this.takeLock();
    this.externalHold = true;
  }

  async releaseLock(): Promise<void> {
    this.externalHold = false;
    await this.lock.releaseLock();
  }

  /** Calls `listener` when another instance (in this process or another) commits: fs.watch on the folder, and a cheap poll. */
  watch(listener: () => void): () => void {
    this.listeners.add(listener);
    if (this.listeners.size === 1) this.startWatching();
    return () => {
      if (this.listeners.delete(listener) && this.listeners.size === 0) this.stopWatching();
    };
  }

  async describe(): Promise<DriverDescription> {
    const [main, journal, backup, lockStat, holder] = await Promise.all([
      fs.stat(this.path).catch(() => undefined),
      fs.lstat(this.journalPath).catch(() => undefined),
      fs.stat(this.backupPath).catch(() => undefined),
      fs.stat(this.lockPath).catch(() => undefined),
      readHolder(this.lockPath),
    ]);
    const view = this.view;
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
      bytesRead: { ...this.bytesRead },
    };
  }

  async close(): Promise<void> {
    this.stopWatching();
    this.listeners.clear();
    try {
      await this.compactOnClose();
    } finally {
      this.externalHold = false;
      await this.lock.releaseLock();
      await this.inTurn(async () => {
        await closeView(this.view);
        this.view = undefined;
      });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Reading

  /** Runs `step` after every step before it (reads and writes of the view take turns). */
  private inTurn<T>(step: () => Promise<T>): Promise<T> {
    const next = this.turn.then(step, step);
    this.turn = next.catch(() => undefined);
    return next;
  }

  /** The view, caught up with the files. */
  private async current(): Promise<View> {
    await this.catchUp();
    return this.view as View;
  }

  /**
   * Brings the view up to date: the journal's new bytes, or everything again when the journal or
   * `tasks.json` was replaced (a compaction elsewhere: it seals the journal first, and the seal is
   * what is seen). Returns whether something another instance wrote was found.
   */
  private async catchUp(): Promise<boolean> {
    const view = this.view;
    if (!view) {
      await this.reload();
      return false;
    }
    let foreign = false;
    const seen = await fs.lstat(this.journalPath).catch((error) => {
      if (codeOf(error) === "ENOENT") return undefined;
      throw error;
    });
    const journal = view.journal;
    const same = journal && seen && seen.ino === journal.file.ino && seen.dev === journal.file.dev && seen.size >= journal.scan.seen;
    if (journal && seen && same) {
      if (seen.size > journal.scan.seen) {
        const before = journal.scan.seq;
        this.readJournal(view, journal, await this.readJournalBytes(journal.file, journal.scan.scanned, seen.size));
        if (journal.scan.sealed !== undefined) {
          await this.reload();
          return true;
        }
        foreign = journal.scan.seq !== before;
      }
    } else if (seen && !view.matches && (await this.adoptJournal(view))) {
      // A journal that continues the snapshot this instance has (its first records): read it alone.
      foreign = true;
    } else if (journal || seen) {
      await this.reload();
      return true;
    }
    const now = await this.snapshotIdentity();
    if (!sameIdentity(now, view.snapshot.identity)) {
      await this.reload();
      return true;
    }
    return foreign;
  }

  /**
   * Takes in a journal that appeared (or replaced one that did not continue the snapshot) when
   * it continues the snapshot this view holds, reading the journal only. False when it does not
   * (or something else changed): the caller reads everything again.
   */
  private async adoptJournal(view: View): Promise<boolean> {
    const marker = view.snapshot.marker;
    if (!marker) return false;
    const opened = await io("open the journal", () => JournalFile.open(this.journalPath));
    if (!(opened instanceof JournalFile)) return false;
    let adopted = false;
    try {
      const bytes = await this.readJournalBytes(opened, 0);
      const nl = bytes.indexOf(0x0a);
      const probe = emptyScan();
      if (nl >= 0) scanJournal(probe, bytes.subarray(0, nl + 1), () => undefined);
      if (probe.header?.id !== marker.id || probe.header.seq !== marker.seq) return false;
      // The snapshot must still be the one the view has (the journal was opened after it was read).
      if (!sameIdentity(await this.snapshotIdentity(), view.snapshot.identity)) return false;
      const old = view.journal;
      view.journal = { file: opened, scan: emptyScan() };
      view.matches = true;
      adopted = true;
      await old?.file.close();
      this.readJournal(view, view.journal, bytes);
      return true;
    } finally {
      if (!adopted) await opened.close();
    }
  }

  /**
   * Reads the store from scratch. The journal is opened first and read last: a snapshot read in
   * between is then either the one the journal continues (its records apply) or a newer one
   * that already holds them (a compaction sealed the journal before replacing `tasks.json`).
   */
  private async reload(): Promise<void> {
    const old = this.view;
    this.view = undefined;
    await closeView(old); // read again from scratch: what it pinned no longer matters
    const opened = await io("open the journal", () => JournalFile.open(this.journalPath));
    if (opened && "notRegular" in opened) throw this.notRegular(this.journalPath, opened.notRegular);
    let snapshot: Snapshot;
    try {
      snapshot = await this.readSnapshot();
    } catch (error) {
      await opened?.close();
      throw error;
    }
    const view: View = {
      snapshot,
      journal: undefined,
      matches: false,
      records: [],
      recordBytes: 0,
      lastUpdated: snapshotTime(snapshot),
      writer: undefined,
    };
    if (opened) {
      const scan = emptyScan();
      view.journal = { file: opened, scan };
      let bytes: Buffer;
      try {
        bytes = await this.readJournalBytes(opened, 0);
      } catch (error) {
        await closeView(view);
        throw error;
      }
      // Whether it continues the snapshot is in its first line.
      const marker = snapshot.marker;
      const firstLine = bytes.indexOf(0x0a);
      const probe = emptyScan();
      scanJournal(probe, firstLine >= 0 ? bytes.subarray(0, firstLine + 1) : Buffer.alloc(0), () => undefined);
      view.matches = marker !== undefined && probe.header?.id === marker.id && probe.header.seq === marker.seq;
      if (marker && probe.corrupt && bytes.length > 0) {
        await closeView(view);
        throw new CorruptDataError(`json-file: the journal ${this.journalPath} is damaged: ${probe.corrupt}`);
      }
      this.readJournal(view, view.journal, bytes);
    }
    this.view = view;
  }

  /**
   * Takes `chunk` (the bytes of `journal` from its `scan.scanned` on) into the view: valid records
   * join it when the journal continues the snapshot. Returns the valid lines read (seals too).
   */
  private readJournal(view: View, journal: NonNullable<View["journal"]>, chunk: Buffer): Buffer[] {
    const valid: Buffer[] = [];
    const applies = journal === view.journal && view.matches;
    scanJournal(journal.scan, chunk, (record, line) => {
      valid.push(line);
      if (!applies || record.seal !== undefined) return;
      view.records.push(record.writes);
      view.recordBytes += line.length;
      view.lastUpdated = record.at;
      if (view.writer) {
        view.writer.bytes.forget(record.writes);
        view.writer.table.apply(record.writes);
      }
    });
    if (journal.scan.corrupt && applies) {
      if (this.view === view) this.view = undefined;
      void closeView(view);
      throw new CorruptDataError(
        `json-file: the journal ${this.journalPath} is damaged: ${journal.scan.corrupt}; the records after it cannot be applied`,
      );
    }
    return valid;
  }

  private async readJournalBytes(file: JournalFile, from: number, to?: number): Promise<Buffer> {
    const bytes = await io("read the journal", () => file.read(from, to));
    this.bytesRead.journal += bytes.length;
    return bytes;
  }

  private async snapshotIdentity(): Promise<Identity | undefined> {
    try {
      return identityOf(await fs.stat(this.path, { bigint: true }));
    } catch (error) {
      if (codeOf(error) === "ENOENT") return undefined;
      throw error;
    }
  }

  /** `tasks.json`, kept open. Its marker is read from its last bytes where this driver wrote it, else from the parsed document. */
  private async readSnapshot(): Promise<Snapshot> {
    const found = await io("read the store", () => readRegularFileKept(this.path));
    switch (found.kind) {
      case "missing":
        return { handle: undefined, identity: undefined, bytes: undefined, marker: undefined, sealed: undefined };
      case "not-regular":
        throw this.notRegular(this.path, found.type);
      case "too-large":
        // Never "recovered": restore() refuses a store this size too.
        throw new CorruptDataError(
          `json-file: ${this.path} is ${found.size} bytes, more than this driver can read (${READ_LIMIT_BYTES}, V8's longest string); it was left as it is`,
        );
    }
    this.bytesRead.snapshot += found.bytes.length;
    const tail = MARKER_TAIL.exec(found.bytes.toString("latin1", Math.max(0, found.bytes.length - 160)));
    let marker: Marker | undefined;
    if (tail) marker = { id: tail[1] as string, seq: Number(tail[2]) };
    else {
      try {
        marker = markerOf(parseStore(found.bytes, this.path));
      } catch {
        marker = undefined; // not JSON: whoever reads it next says so
      }
    }
    return { handle: found.handle, identity: identityOf(found.stat), bytes: found.bytes, marker, sealed: undefined };
  }

  /** The store a view stands for, as fresh objects (the caller may change them). */
  private dataOf(view: View): StorageData {
    const { snapshot } = view;
    let raw: unknown;
    if (!snapshot.bytes) raw = emptyData();
    else raw = parseStore(snapshot.bytes, this.path);
    if (Array.isArray(raw)) return raw as unknown as StorageData; // a legacy todo file: core migrates it
    delete (raw as { journal?: unknown }).journal;
    if (view.records.length === 0) return raw as StorageData;
    // Records apply to a store of the right shape; anything else is returned as it is, for core's check to refuse.
    if (!isTableShaped(raw)) return raw as StorageData;
    const table = TaskTable.fromData(raw as StorageData);
    // Copies of the log entries: the caller owns what it gets, the view keeps its records.
    for (const writes of view.records) table.apply(copyOf(writes));
    return table.toData(view.lastUpdated);
  }

  /** The view's store as a table for `transact()`, checked against core's schema unless this driver sealed the snapshot. */
  private writerOf(view: View): { table: TaskTable; bytes: StoreBytes } {
    if (view.writer) return view.writer;
    const { snapshot } = view;
    let table: TaskTable;
    if (!snapshot.bytes) table = new TaskTable();
    else {
      snapshot.sealed ??= isSealed(snapshot.bytes);
      table = this.tableOf(snapshot.bytes, snapshot.sealed);
    }
    for (const writes of view.records) table.apply(writes);
    view.writer = { table, bytes: new StoreBytes() };
    return view.writer;
  }

  private tableOf(text: Buffer, sealed: boolean): TaskTable {
    const raw = parseStore(text, this.path);
    if (isLegacyData(raw)) throw new CorruptDataError(`json-file: ${this.path} is a legacy todo file; load the store to migrate it first`);
    delete (raw as { journal?: unknown }).journal;
    const version = (raw as { version?: unknown }).version;
    // A newer major version is read as it is; core refuses to write it through the reader's version().
    if (typeof version === "string" && !isWritableVersion(version) && Array.isArray(raw.tasks)) return TaskTable.fromData(raw);
    // Sealed: this driver wrote exactly these bytes from a table core had checked.
    if (sealed && isTableShaped(raw)) return TaskTable.fromData(raw);
    try {
      return TaskTable.fromData(parseStorageData(raw));
    } catch (error) {
      throw new CorruptDataError(`json-file: ${this.path} fails the schema; load the store to recover it: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Writing

  private async transactLocked(work: (reader: StoreReader) => Promise<WriteSet>): Promise<void> {
    const view = this.view as View;
    const writer = this.writerOf(view);
    const writes = await work(writer.table.reader());
    if (writes.puts.length === 0 && writes.logs.length === 0 && writes.deletes.length === 0 && !writes.version) return;
    this.refuseIfLockLost();
    const at = Math.max(Date.now(), view.lastUpdated);
    const record = this.needsRewrite(view) ? undefined : encodeRecord({ seq: lastSeq(view) + 1, at, writes });
    if (!record || storeBytes(view) + record.length > this.maxStoreBytes) {
      // A store of today's format, a compaction or a torn tail to finish, or a write near the
      // size limit: the change goes into a new tasks.json.
      await this.rewrite(view, { writes, at });
      return;
    }
    await this.autoBackup(view, false, true);
    const journal = await this.journalFor(view);
    await this.append(view, journal, record, { writes, at });
    this.wroteOnce = true;
    if (this.shouldCompact(view)) await this.compactQuietly(view);
  }

  /** `tasks.json` must be written (not the journal): there is none yet, or no journal may continue it as it is. */
  private needsRewrite(view: View): boolean {
    if (!view.snapshot.bytes || !view.snapshot.marker) return true;
    const journal = view.journal;
    return !!journal && view.matches && (journal.scan.sealed !== undefined || tornFrom(journal.scan) !== undefined);
  }

  private shouldCompact(view: View): boolean {
    const journal = view.journal?.scan.seen ?? 0;
    const snapshot = view.snapshot.bytes?.length ?? 0;
    return view.matches && journal > this.compactionBytes && journal > this.compactionRatio * snapshot;
  }

  /**
   * Appends one record (or a seal) to `journal` and syncs it. The record counts once it is in the
   * file after the last valid record with the next sequence; that is checked after the append
   * (the file grew by exactly this record from where this instance had read it, or else the new
   * bytes are read). A record that lost to another writer's (this one's lock was taken over while
   * it stalled) is ignored by every reader, and the change set runs again. `bytes` may start with
   * a newline that ends a torn line before the record (`line`).
   */
  private async append(
    view: View,
    journal: NonNullable<View["journal"]>,
    line: Buffer,
    change: { writes: WriteSet; at: number } | undefined,
    bytes: Buffer = line,
  ): Promise<void> {
    const { file, scan } = journal;
    // Where this instance last read (or wrote) it to. Anything another writer appended since (only
    // a writer whose lock was taken over does, under the lock this one holds) shows after the append.
    const before = scan.seen;
    const clean = !scan.partial && scan.junkFrom === undefined && bytes === line;
    let failure: unknown;
    try {
      await file.append(bytes);
    } catch (error) {
      failure = error;
    }
    // The sync and the look at the file's size run side by side (both after the write).
    let unsynced: unknown;
    let after = -1;
    if (failure === undefined) {
      [unsynced, after] = await Promise.all([
        file.datasync().then(
          () => undefined,
          (error: unknown) => error ?? new Error("fdatasync failed"),
        ),
        clean ? file.size().catch(() => -1) : Promise.resolve(-1),
      ]);
    }
    if (after === before + line.length) {
      this.accept(view, journal, line, change);
    } else {
      // Find out from the file what happened: the record is in it and valid, or it is not.
      let valid: Buffer[];
      try {
        valid = this.readJournal(view, journal, await this.readJournalBytes(file, scan.scanned));
      } catch (error) {
        if (failure !== undefined) throw await unavailable(failure, "append to the journal");
        throw error;
      }
      if (!valid.some((found) => found.equals(line))) {
        if (failure !== undefined) throw await unavailable(failure, "append to the journal");
        throw new LostRace("json-file: another writer's record took this one's place; the change set runs again");
      }
      // In the file despite the error (all of it was written): it counts, so it is synced now.
      if (failure !== undefined) unsynced = await file.datasync().catch((error: unknown) => error ?? new Error("fdatasync failed"));
    }
    if (unsynced !== undefined) {
      // The record is in the file and other processes read it: reporting the write as failed
      // would have it written twice. Like a folder that cannot be synced, it is a warning.
      this.warn(
        new StorageUnavailableError(
          `json-file: a record was appended to ${this.journalPath}, but it could not be synced (${(unsynced as Error).message}); a power cut may still undo it`,
          { cause: unsynced },
        ),
      );
    }
  }

  /** Takes this instance's own record, just appended where it expected, into the view. */
  private accept(
    view: View,
    journal: NonNullable<View["journal"]>,
    line: Buffer,
    change: { writes: WriteSet; at: number } | undefined,
  ): void {
    const { scan } = journal;
    scan.seq++;
    scan.scanned += line.length;
    scan.validEnd = scan.scanned;
    scan.seen = scan.scanned;
    if (!change || journal !== view.journal || !view.matches) return;
    scan.records++;
    view.records.push(change.writes);
    view.recordBytes += line.length;
    view.lastUpdated = change.at;
    if (view.writer) {
      view.writer.bytes.forget(change.writes);
      view.writer.table.apply(change.writes);
    }
  }

  /** The journal continuing the view's snapshot: the one there, or a new one (linked into place, or renamed over one that does not continue it). */
  private async journalFor(view: View): Promise<NonNullable<View["journal"]>> {
    const marker = view.snapshot.marker as Marker;
    if (view.journal && view.matches) return view.journal;
    const stale = view.journal;
    if (stale) await this.sealQuietly(view, marker.id);
    const header = encodeHeader(marker, Date.now());
    const stage = await this.lock.fence();
    let file: JournalFile;
    try {
      file = await io("create the journal", () =>
        JournalFile.create(this.journalPath, stage, header, stale !== undefined, this.unsynced(this.journalPath)),
      );
    } catch (error) {
      if (codeOf(error) === "EEXIST") throw new LostRace("json-file: another writer created the journal; the change set runs again");
      throw await this.lock.explain(error);
    }
    await stale?.file.close();
    const scan = emptyScan();
    scanJournal(scan, header, () => undefined);
    scan.seen = header.length;
    view.journal = { file, scan };
    view.matches = true;
    view.records = [];
    view.recordBytes = 0;
    return view.journal;
  }

  /** Appends a seal to the view's journal (nothing valid can follow it), when it has a header and is not damaged or sealed already. */
  private async seal(view: View, next: string): Promise<void> {
    const journal = view.journal;
    if (!journal?.scan.header || journal.scan.corrupt || journal.scan.sealed !== undefined) return;
    const torn = tornFrom(journal.scan);
    const line = encodeRecord({
      seq: journal.scan.seq + 1,
      at: Date.now(),
      writes: NO_WRITES,
      seal: next,
      ...(torn !== undefined ? { after: torn } : {}),
    });
    // After an incomplete line (a torn tail), a newline first ends it; the seal says it follows it.
    const bytes = journal.scan.partial ? Buffer.concat([Buffer.from("\n"), line]) : line;
    await this.append(view, journal, line, undefined, bytes);
    journal.scan.sealed = next;
  }

  /** Sealing an old journal before it is replaced: a best effort (a damaged or read-only one stays as it is, and is replaced anyway). */
  private async sealQuietly(view: View, next: string): Promise<void> {
    try {
      await this.seal(view, next);
    } catch (error) {
      if (error instanceof LockLostError) throw error;
    }
  }

  /**
   * Writes the view's store (with `change` applied) as a new `tasks.json`: the journal is sealed
   * first (so nothing appended to it later counts), the new file renamed into place, the journal
   * removed. A crash at any step leaves the old snapshot with the sealed journal (the same store)
   * or the new snapshot (the same store plus `change`), which a stale journal never continues.
   */
  private async rewrite(view: View, change?: { writes: WriteSet; at: number }): Promise<void> {
    const writer = this.writerOf(view);
    const at = change?.at ?? view.lastUpdated;
    // Near the limit, the store's exact size now (a store already over a lowered limit may still shrink).
    let current: number | undefined;
    if (change) {
      const estimate = JSON.stringify(change.writes).length;
      if (storeBytes(view) + estimate > this.maxStoreBytes) current = writer.bytes.encode(writer.table, view.lastUpdated).length;
      writer.bytes.forget(change.writes);
      writer.table.apply(change.writes);
    } else current = storeBytes(view);
    let body: Buffer;
    try {
      body = writer.bytes.encode(writer.table, at);
      if (body.length > this.maxStoreBytes && (current === undefined || body.length > current)) throw this.tooLarge(body.length);
    } catch (error) {
      view.writer = undefined; // the table holds a change that was not written
      throw error;
    }
    try {
      await this.autoBackup(view, change !== undefined);
      await this.replaceSnapshot(view, body, at);
    } catch (error) {
      view.writer = undefined;
      throw error;
    }
    (this.view as View).writer = writer;
    this.wroteOnce = true;
  }

  private async compactQuietly(view: View): Promise<void> {
    try {
      await this.rewrite(view);
    } catch (error) {
      // The write it follows is committed; the next writer compacts.
      if (error instanceof LockLostError || error instanceof LostRace) return;
      this.warn(
        new StorageUnavailableError(`json-file: folding the journal into ${this.path} failed: ${(error as Error).message}`, {
          cause: error,
        }),
      );
    }
  }

  /**
   * The new `tasks.json` from `body` (the store's JSON, without a marker), sealed with a new
   * marker; the old journal sealed before and removed after. The view becomes the new snapshot.
   */
  private async replaceSnapshot(view: View | undefined, body: Buffer, lastUpdated: number): Promise<void> {
    const id = randomUUID();
    if (view?.journal) await this.sealQuietly(view, id);
    const marker: Marker = { id, seq: view ? lastSeq(view) : 0 };
    const bytes = sealSnapshot(body, marker);
    const target = await io("resolve the store path", () => resolveTarget(this.path));
    const handle = await io("write the store", () => writeFileAtomicKept(target, bytes, this.unsynced(target), this.lock.asFence));
    // Written: nothing from here on fails the call (a write reported as failed is made again).
    const identity = await handle
      .stat({ bigint: true })
      .then(identityOf)
      .catch(() => undefined); // unknown: the next look reads the file again
    this.wroteOnce = true;
    const next: View = {
      snapshot: { handle, identity, bytes, marker, sealed: true },
      journal: undefined,
      matches: false,
      records: [],
      recordBytes: 0,
      lastUpdated,
      writer: undefined,
    };
    const old = this.view;
    this.view = next;
    await closeView(old);
    if (view && view !== old) await closeView(view);
    await this.removeJournal();
  }

  /**
   * Removes the (sealed) journal after `tasks.json` was replaced, by renaming it into the lock's
   * fence (so only the holder can) and deleting it there. Never fails: a sealed journal left in
   * place continues no snapshot, and the next writer replaces it.
   */
  private async removeJournal(): Promise<void> {
    try {
      const stage = await this.lock.fence();
      const away = path.join(stage, `journal-${randomUUID().slice(0, 8)}.old`);
      await fs.rename(this.journalPath, away);
      await fs.unlink(away).catch(() => undefined);
    } catch {
      // no journal, or the lock lost: either way it stays as it is
    }
  }

  private async saveLocked(body: Buffer, lastUpdated: number): Promise<void> {
    let view: View | undefined;
    try {
      view = await this.current();
    } catch (error) {
      // A store that cannot be read is replaced all the same (a recovery, a migration).
      if (!TaskStoreError.hasCode(error, "CORRUPT_DATA")) throw error;
      view = undefined;
    }
    const currentSize = view ? storeBytes(view) : ((await fs.stat(this.path).catch(() => undefined))?.size ?? 0);
    // A store already over the limit (the limit was lowered) may still shrink.
    if (body.length > this.maxStoreBytes && body.length > currentSize) throw this.tooLarge(body.length);
    this.refuseIfLockLost();
    if (await io("inspect the store path", () => isSymlink(this.path))) {
      const current = await io("read the store", () => readRegularFile(this.path));
      if (current.kind === "not-regular") throw this.notRegular(this.path, current.type);
      if (current.kind === "too-large" || (current.kind === "file" && !looksLikeStore(current.bytes))) {
        throw new CorruptDataError(
          `json-file: ${this.path} is a symlink to a file that does not look like a taskstore store; not writing through it (nothing was changed)`,
        );
      }
    }
    if (view) await this.autoBackup(view);
    await this.replaceSnapshot(view, body, lastUpdated);
  }

  private async backupLocked(): Promise<void> {
    const view = await this.current();
    if (!view.snapshot.bytes) {
      await io("write the backup", () =>
        writeFileAtomic(this.backupPath, Buffer.from(JSON.stringify(emptyData())), this.unsynced(this.backupPath), this.lock.asFence),
      );
      return;
    }
    const data = this.dataOf(view);
    if (!isLoadableStore(data)) throw new CorruptDataError(`json-file: ${this.path} fails the schema; the backup was left as it was`);
    if (Array.isArray(data)) {
      const text = view.snapshot.bytes;
      await io("keep the legacy file", () =>
        keepLegacy(this.names, text, this.unsynced("the legacy copy of the store"), this.lock.asFence),
      );
      await io("write the backup", () => writeFileAtomic(this.backupPath, text, this.unsynced(this.backupPath), this.lock.asFence));
      return;
    }
    await this.writeBackup(view, () => Buffer.from(JSON.stringify(data)));
  }

  /**
   * The store as the view has it, to `tasks.backup.json`: `tasks.json`'s bytes when the journal
   * adds nothing, else encoded; sealed with a marker of its own, which no journal continues (so a
   * restored backup is exactly the store it was).
   */
  private async writeBackup(view: View, encode: () => Buffer): Promise<void> {
    const body = view.records.length === 0 && view.snapshot.bytes ? withoutMarker(view.snapshot.bytes) : undefined;
    const bytes = sealSnapshot(body ?? encode(), { id: randomUUID(), seq: lastSeq(view) });
    await io("write the backup", () => writeFileAtomic(this.backupPath, bytes, this.unsynced(this.backupPath), this.lock.asFence));
    this.backupSeenAt = Date.now();
  }

  /**
   * Before a write, a copy of the store as it is (before the write) to the backup: on this
   * instance's first write, then at most every `backupIntervalMs` (the backup file's age decides,
   * across processes). Only a store that loads is copied: the view's table was built and checked.
   * `applied`: the view's table already holds the write about to be made, so only `tasks.json`'s
   * bytes (when the journal adds nothing to them) can stand for the store before it.
   */
  private async autoBackup(view: View, applied = false, append = false): Promise<void> {
    if (!view.snapshot.bytes) return;
    if (this.wroteOnce) {
      // Before an append, the backup's age as this instance last saw it stands until the interval
      // could have passed (no stat per record); before a new tasks.json, the file says.
      if (append && Date.now() - this.backupSeenAt < this.backupIntervalMs) return;
      const stat = await fs.stat(this.backupPath).catch(() => undefined);
      if (stat) this.backupSeenAt = stat.mtimeMs;
      if (stat && Date.now() - stat.mtimeMs < this.backupIntervalMs) return;
    }
    if (applied && view.records.length > 0) return;
    let writer: { table: TaskTable; bytes: StoreBytes };
    try {
      writer = this.writerOf(view);
    } catch (error) {
      // A store that does not load (or a legacy file, which core backs up itself) is not copied over a good backup.
      if (TaskStoreError.hasCode(error, "CORRUPT_DATA")) return;
      throw error;
    }
    await this.writeBackup(view, () => writer.bytes.encode(writer.table, view.lastUpdated));
  }

  private async restoreLocked(): Promise<RestoreResult> {
    const text = await this.readBackup();
    this.refuseIfLockLost();
    const link = await io("inspect the store path", () => isSymlink(this.path));
    const target = await io("resolve the store path", () => resolveTarget(this.path));
    // Through a link the target is read, to tell a store from some other file; else its kind is enough.
    const read: FileContent | undefined = link ? await io("read the store", () => readRegularFile(target)) : undefined;
    const current: FileKind = read ?? (await io("inspect the store", () => inspectFile(target)));
    if (current.kind === "not-regular") throw this.notRegular(this.path, current.type);
    if (current.kind === "too-large") {
      throw new CorruptDataError(
        `json-file: ${this.path} is ${current.size} bytes, more than this driver can read (${READ_LIMIT_BYTES}); the backup was not restored over it, and nothing was changed`,
      );
    }
    if (link && !(read?.kind === "file" && looksLikeStore(read.bytes))) {
      throw new CorruptDataError(
        `json-file: ${this.path} is a symlink to ${target}, which ${current.kind === "missing" ? "does not exist" : "does not look like a taskstore store"}; a backup is never restored through it (nothing was changed)`,
      );
    }
    // The journal is sealed where it can be (in restoreSnapshot), so nothing appended to it from now on counts.
    let view: View | undefined;
    try {
      view = await this.current();
    } catch (error) {
      if (error instanceof LockLostError) throw error;
      view = undefined;
    }
    let movedTo: string | undefined;
    if (current.kind !== "missing") movedTo = await io("move the store aside", () => moveAside(this.names, target));
    const journal = await fs.lstat(this.journalPath).catch(() => undefined);
    if (journal?.isFile()) await io("move the journal aside", () => moveAside(this.names, this.journalPath, "journal.corrupt", ".jsonl"));
    await this.restoreSnapshot(view, text);
    return { ...(movedTo ? { movedTo } : {}), restoredFrom: this.backupPath };
  }

  /**
   * Puts the backup's bytes in place of `tasks.json`, as they are: a backup's marker is its own,
   * so no journal continues it. Should the journal there carry its marker all the same (a backup
   * restored before, and written to since), the backup is sealed anew with a marker of its own.
   */
  private async restoreSnapshot(view: View | undefined, backup: Buffer): Promise<void> {
    const id = randomUUID();
    if (view?.journal) await this.sealQuietly(view, id);
    const marker = markerOf(parseStore(backup, this.backupPath));
    const header = view ? view.journal?.scan.header : await this.journalHeader();
    const bytes = marker && header && header.id === marker.id ? sealSnapshot(withoutMarker(backup), { id, seq: marker.seq }) : backup;
    const target = await io("resolve the store path", () => resolveTarget(this.path));
    await io("restore the backup", () => writeFileAtomic(target, bytes, this.unsynced(target), this.lock.asFence));
    // Written: the next look reads it (and its marker) again.
    const old = this.view;
    this.view = undefined;
    await closeView(old);
    if (view && view !== old) await closeView(view);
    await this.removeJournal();
  }

  /** The header of the journal there, read without the view (which could not be read). */
  private async journalHeader(): Promise<Marker | undefined> {
    const opened = await JournalFile.open(this.journalPath).catch(() => undefined);
    if (!(opened instanceof JournalFile)) return undefined;
    try {
      const scan = emptyScan();
      const bytes = await opened.read(0, Math.min(await opened.size(), 4096));
      const nl = bytes.indexOf(0x0a);
      if (nl >= 0) scanJournal(scan, bytes.subarray(0, nl + 1), () => undefined);
      return scan.header;
    } catch {
      return undefined;
    } finally {
      await opened.close();
    }
  }

  /** The backup's bytes when it is a regular file that parses as a loadable store, else `CORRUPT_DATA`. */
  private async readBackup(): Promise<Buffer> {
    let found: FileContent;
    try {
      found = await readRegularFile(this.backupPath);
    } catch (error) {
      throw new CorruptDataError(`json-file: there is no usable backup at ${this.backupPath}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (found.kind !== "file") {
      const why =
        found.kind === "missing" ? "it does not exist" : found.kind === "too-large" ? `it is ${found.size} bytes` : `it is ${found.type}`;
      throw new CorruptDataError(`json-file: there is no usable backup at ${this.backupPath} (${why})`);
    }
    try {
      const parsed = parseStore(found.bytes, this.backupPath) as unknown as Record<string, unknown>;
      if (!Array.isArray(parsed)) delete parsed.journal;
      if (!isLoadableStore(parsed)) throw new Error(`${this.backupPath} fails the schema`);
    } catch (error) {
      if (error instanceof CorruptDataError) throw error;
      throw new CorruptDataError(`json-file: there is no usable backup at ${this.backupPath}`, { cause: error });
    }
    return found.bytes;
  }

  /** Folds the journal into `tasks.json` on close, when the store is small and the lock free at once (nobody waits for it). */
  private async compactOnClose(): Promise<void> {
    const view = this.view;
    if (!this.wroteOnce || !view?.matches || view.records.length === 0 || this.compactOnCloseBytes === 0) return;
    if (storeBytes(view) > this.compactOnCloseBytes) return;
    const held = this.externalHold && this.lock.held;
    if (!held) {
      try {
        await this.refuseIrregularFiles();
        await this.lock.acquire(0);
      } catch {
        return; // busy: the next writer compacts when the journal is due
      }
    }
    try {
      await this.inTurn(async () => {
        await this.catchUp();
        const now = this.view as View;
        if (now.matches && now.records.length > 0) await this.compactQuietly(now);
      });
    } catch {
      // a store that cannot be read now is not compacted; its next reader reports it
    } finally {
      if (!held) await this.lock.releaseLock();
    }
  }

  /** Runs a seed method under the lock: the caller's, taken through `acquireLock()`, or its own for the call. */
  private async underLock<T>(step: () => Promise<T>): Promise<T> {
    if (this.externalHold) {
      // The caller's load and save belong together: with its lock lost, nothing is written for it.
      this.refuseIfLockLost();
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
   * `lingerMs`): a release that fails does not undo the write (the folder is a leftover, removed later).
   */
  private async releaseQuietly(soon = true): Promise<void> {
    try {
      if (soon) await this.lock.releaseSoon();
      else await this.lock.releaseLock();
    } catch (error) {
      this.warn(
        new StorageUnavailableError(`json-file: the lock ${this.lockPath} could not be released: ${(error as Error).message}`, {
          cause: error,
        }),
      );
    }
  }

  private async takeLock(): Promise<void> {
    if (!this.lock.kept) await this.refuseIrregularFiles(); // before the lock folder is made beside it
    await io("take the lock", () => this.lock.acquire());
  }

  /** Another process may have written since the lock was lost: writing now could overwrite its changes. */
  private refuseIfLockLost(): void {
    if (!this.lock.held) throw new LockLostError(this.lockPath);
  }

  // -------------------------------------------------------------------------------------------
  // Watching

  private startWatching(): void {
    try {
      this.watcher = watchFolder(this.names.dir, { persistent: false }, (_event, name) => {
        const file = name?.toString();
        if (!file || file === path.basename(this.journalPath) || file === path.basename(this.path)) this.nudge();
      });
      this.watcher.on("error", () => {
        this.watcher?.close();
        this.watcher = undefined; // the poll goes on
      });
    } catch {
      this.watcher = undefined; // no fs.watch here: the poll does it
    }
    this.pollTimer = setInterval(() => this.poke(), this.watchIntervalMs);
    this.pollTimer.unref();
  }

  private stopWatching(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
  }

  /**
   * An event of fs.watch: most come from this instance's own appends, which its view holds
   * already. A stat tells those apart without waiting for the view (a write may be in progress).
   */
  private nudge(): void {
    if (this.nudging) {
      this.nudgeAgain = true;
      return;
    }
    this.nudging = true;
    // Events come in bursts (each append, the lock's folder): looked at once per burst.
    void (async () => {
      await new Promise((resolve) => setTimeout(resolve, NUDGE_DELAY_MS));
      if (this.listeners.size === 0) return; // unsubscribed (or closed) meanwhile
      do {
        this.nudgeAgain = false;
        const [journal, snapshot] = await Promise.all([
          fs.lstat(this.journalPath).catch(() => undefined),
          this.snapshotIdentity().catch(() => undefined),
        ]);
        const view = this.view;
        const known =
          view &&
          sameIdentity(snapshot, view.snapshot.identity) &&
          (journal
            ? view.journal !== undefined && journal.ino === view.journal.file.ino && journal.size === view.journal.scan.seen
            : view.journal === undefined);
        if (!known) this.poke();
      } while (this.nudgeAgain && this.listeners.size > 0);
    })().finally(() => {
      this.nudging = false;
    });
  }

  /** Looks for another instance's commit (reading only the journal's new bytes) and tells the listeners. */
  private poke(): void {
    if (this.listeners.size === 0) return;
    if (this.checking) {
      this.checkAgain = true;
      return;
    }
    this.checking = (async () => {
      do {
        this.checkAgain = false;
        let foreign = false;
        try {
          foreign = await this.inTurn(() => this.catchUp());
        } catch {
          foreign = true; // something changed that cannot be read: the listener's load reports it
        }
        if (foreign) this.notify();
      } while (this.checkAgain && this.listeners.size > 0);
    })().finally(() => {
      this.checking = undefined;
    });
  }

  private notify(): void {
    for (const listener of [...this.listeners]) {
      try {
        listener();
      } catch (error) {
        this.warn(error as Error);
      }
    }
  }

  // -------------------------------------------------------------------------------------------

  private tooLarge(size: number): ValidationError {
    const what = Number.isFinite(size) ? `${size} bytes` : "larger than the longest string JavaScript can hold";
    return new ValidationError(
      [
        {
          path: [],
          rule: "max_store_size",
          message: `the store would be ${what}, over its limit of ${this.maxStoreBytes} bytes (maxStoreBytes); nothing was written`,
        },
      ],
      { subject: `json-file: ${this.path}` },
    );
  }

  private notRegular(file: string, type: string): ValidationError {
    return new ValidationError(
      [
        {
          path: ["path"],
          rule: "regular_file",
          message: `${file} is ${type} (after following symlinks), not a regular file; the driver does not open, change or write beside it`,
        },
      ],
      { subject: "json-file" },
    );
  }

  /**
   * The store and its backup must be regular files (or missing), and so must the journal (which
   * is never a symlink): a FIFO, a device, a folder is refused before anything is made beside it.
   */
  private async refuseIrregularFiles(): Promise<void> {
    for (const file of [this.path, this.backupPath]) {
      const seen = await io("inspect the store path", () => inspectFile(file, Number.MAX_SAFE_INTEGER));
      if (seen.kind === "not-regular") throw this.notRegular(file, seen.type);
    }
    const journal = await fs.lstat(this.journalPath).catch(() => undefined);
    if (journal && !journal.isFile())
      throw this.notRegular(this.journalPath, journal.isSymbolicLink() ? "a symbolic link" : typeOf(journal));
  }
}

/** A snapshot's bytes without the marker this driver adds at its end (the bytes as they are when there is none). */
function withoutMarker(bytes: Buffer): Buffer {
  const tail = bytes.toString("latin1", Math.max(0, bytes.length - 160));
  const found = /,?"journal":\{"id":"[0-9a-f-]{8,64}","seq":\d{1,16},"checksum":"[0-9a-f]{8}"\}\}$/.exec(tail);
  if (!found) return bytes;
  const cut = bytes.length - (tail.length - found.index);
  return Buffer.concat([bytes.subarray(0, cut), Buffer.from("}")]);
}

/** `error` as `io()` reports it (STORAGE_UNAVAILABLE for the codes that mean storage is not usable now). */
async function unavailable(error: unknown, what: string): Promise<unknown> {
  return io(what, () => Promise.reject(error)).catch((mapped: unknown) => mapped);
}

/** The sequence of the last change the view holds. */
function lastSeq(view: View): number {
  if (view.journal && view.matches) return view.journal.scan.seq;
  return Math.max(view.snapshot.marker?.seq ?? 0, view.journal?.scan.header ? view.journal.scan.seq : 0);
}

/** The store's size on disk as the view knows it: tasks.json and the journal. */
function storeBytes(view: View): number {
  return (view.snapshot.bytes?.length ?? 0) + (view.journal?.scan.seen ?? 0);
}

function snapshotTime(snapshot: Snapshot): number {
  if (!snapshot.bytes) return 0;
  const found = /"lastUpdated":(\d{1,16})/.exec(snapshot.bytes.toString("latin1", Math.max(0, snapshot.bytes.length - 600)));
  return found ? Number(found[1]) : 0;
}

function identityOf(stat: { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): Identity {
  return { dev: stat.dev, ino: stat.ino, size: stat.size, mtimeNs: stat.mtimeNs, ctimeNs: stat.ctimeNs };
}

function sameIdentity(a: Identity | undefined, b: Identity | undefined): boolean {
  if (!a || !b) return a === b;
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

async function closeView(view: View | undefined): Promise<void> {
  if (!view) return;
  await view.snapshot.handle?.close().catch(() => undefined);
  await view.journal?.file.close();
}

/** A change set whose log entries are copies (a table built from it does not share them with the view). */
function copyOf(writes: WriteSet): WriteSet {
  if (writes.logs.length === 0) return writes;
  return { ...writes, logs: writes.logs.map((log) => ({ ...log, entries: log.entries.map((entry) => ({ ...entry })) })) };
}

/** A store object the records can be applied to: a tasks array of objects with string ids, and a metadata object. */
function isTableShaped(raw: unknown): boolean {
  if (typeof raw !== "object" || raw === null) return false;
  const { tasks, metadata } = raw as { tasks?: unknown; metadata?: unknown };
  return (
    Array.isArray(tasks) &&
    tasks.every(
      (task) =>
        typeof task === "object" &&
        task !== null &&
        typeof (task as { id?: unknown }).id === "string" &&
        Array.isArray((task as { logs?: unknown }).logs),
    ) &&
    typeof metadata === "object" &&
    metadata !== null
  );
}
