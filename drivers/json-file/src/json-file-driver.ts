import { promises as fs } from "node:fs";
import path from "node:path";
import {
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
  TaskTable,
  ValidationError,
  type WriteSet,
} from "@taskstore/core";
import {
  ensureDir,
  type FileContent,
  type FileKind,
  inspectFile,
  isSymlink,
  READ_LIMIT_BYTES,
  readRegularFile,
  resolveTarget,
  writeFileAtomic,
} from "./atomic-file.js";
import { defaultStorePath } from "./default-path.js";
import { FileLock, readHolder } from "./file-lock.js";
import { keepLegacy, moveAside, namesOf, removeLeftovers, type StoreNames } from "./side-files.js";
import { StoreBytes } from "./store-bytes.js";
import { emptyData, io, looksLikeStore, parseStore } from "./store-format.js";

/** The default `maxStoreBytes`: 256 MiB, well below what the driver can read back (`READ_LIMIT_BYTES`, about 512 MiB). */
export const DEFAULT_MAX_STORE_BYTES = Math.min(256 * 1024 * 1024, READ_LIMIT_BYTES);

export interface JSONFileStorageDriverOptions {
  /** The store file. Default `~/.config/kilocode/tasks.json` (`$XDG_CONFIG_HOME`, `%APPDATA%` on Windows). */
  path?: string;
  /** How long `acquireLock()` waits before `LockTimeoutError`. Default 30,000 ms. */
  lockTimeoutMs?: number;
  /**
   * A lock not refreshed for this long is taken over (a holder on another host, or one whose pid
   * could not be checked). A holder on this host whose process is gone is reclaimed at once.
   * Default 10,000 ms; at least 2,000.
   */
  staleMs?: number;
  /** The automatic backup is refreshed before a write at most this often. Default 10 minutes; 0 = before every write. */
  backupIntervalMs?: number;
  /**
   * The largest store file a write may make, in bytes. A write that would make the file larger
   * (and larger than it is now) is refused with `VALIDATION` (rule `max_store_size`) and nothing
   * is written. Default 256 MiB; at most `READ_LIMIT_BYTES` (V8's longest string, about 512 MiB),
   * since a larger file could never be read back.
   */
  maxStoreBytes?: number;
}

interface Parsed {
  /** The file's bytes this table stands for (written or read): it is reused only while the file holds them. */
  source: Buffer;
  table: TaskTable;
  bytes: StoreBytes;
}

/**
 * The default driver: the whole store in one JSON file, a backup beside it, and a cross-process
 * lock folder. Writes are atomic (temp file, fsync, rename, fsync of the folder), so a crash at
 * any moment leaves a file that loads; the repository group-commits concurrent change sets into
 * one lock, load, apply, save cycle.
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
    changeNotification: false,
  };
  /** The store file as configured (a symlink stays a symlink: writes go through to its target). */
  readonly path: string;
  readonly backupPath: string;
  readonly lockPath: string;
  private readonly names: StoreNames;
  private readonly backupIntervalMs: number;
  private readonly maxStoreBytes: number;
  private readonly lock: FileLock;
  private context: DriverContext | undefined;
  /** The last text this instance read or wrote, to skip re-reading a file nobody changed since. */
  /** The store as parsed by the last `transact()`, owned by this driver alone, valid while the file is the one it wrote. */
  private parsed: Parsed | undefined;
  private wroteOnce = false;

  constructor(options: string | JSONFileStorageDriverOptions = {}) {
    const opts = typeof options === "string" ? { path: options } : options;
    this.path = path.resolve(opts.path ?? defaultStorePath());
    this.names = namesOf(this.path);
    const { dir, stem, ext } = this.names;
    this.backupPath = path.join(dir, `${stem}.backup${ext}`);
    this.lockPath = path.join(dir, `.${stem}.lock`);
    this.backupIntervalMs = opts.backupIntervalMs ?? 10 * 60_000;
    this.maxStoreBytes = opts.maxStoreBytes ?? DEFAULT_MAX_STORE_BYTES;
    if (!Number.isSafeInteger(this.maxStoreBytes) || this.maxStoreBytes < 1 || this.maxStoreBytes > READ_LIMIT_BYTES) {
      throw new ValidationError(
        [{ path: ["maxStoreBytes"], rule: "range", message: `must be a whole number of bytes from 1 to ${READ_LIMIT_BYTES}` }],
        { subject: "json-file" },
      );
    }
    this.lock = new FileLock({
      file: this.path,
      lockPath: this.lockPath,
      timeoutMs: opts.lockTimeoutMs ?? 30_000,
      staleMs: Math.max(opts.staleMs ?? 10_000, 2_000),
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

  async loadData(): Promise<StorageData> {
    const stored = await this.read();
    if (!stored) return emptyData();
    return parseStore(stored, this.path);
  }

  async saveData(data: StorageData): Promise<void> {
    let text: string;
    try {
      text = JSON.stringify(data);
    } catch (error) {
      // Longer than V8's longest string: far past any store this driver could read back.
      if (error instanceof RangeError) throw this.tooLarge(Number.POSITIVE_INFINITY);
      throw error;
    }
    await this.write(Buffer.from(text));
  }

  /** Copies the store to `tasks.backup.json`. A store that is not JSON is never copied over a good backup. */
  async backup(): Promise<void> {
    const text = (await this.read()) ?? Buffer.from(JSON.stringify(emptyData()));
    const parsed = parseStore(text, this.path);
    if (!isLoadableStore(parsed)) throw new CorruptDataError(`json-file: ${this.path} fails the schema; the backup was left as it was`);
    if (Array.isArray(parsed))
      await io("keep the legacy file", () => keepLegacy(this.names, text, this.unsynced("the legacy copy of the store")));
    await io("write the backup", () => writeFileAtomic(this.backupPath, text, this.unsynced(this.backupPath)));
  }

  /**
   * Keeps the current store aside and writes the backup over it. Refused with `CORRUPT_DATA`,
   * nothing touched, when there is no usable backup, when the store is too large to have been
   * read, and when `tasks.json` is a symlink whose target does not look like a store (see
   * `looksLikeStore`): a link to some other file (a cloned repository's `tasks.json -> ~/.bashrc`)
   * is never written through. A regular file at the store path is kept aside, never deleted.
   */
  async restore(): Promise<RestoreResult> {
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
    let movedTo: string | undefined;
    if (current.kind !== "missing") movedTo = await io("move the store aside", () => moveAside(this.names, target));
    await io("restore the backup", () => writeFileAtomic(target, text, this.unsynced(target)));
    return { ...(movedTo ? { movedTo } : {}), restoredFrom: this.backupPath };
  }

  /**
   * Applies a change set under the lock: the store as this instance last wrote it (parsed again
   * only when another process wrote since), the write set applied, the whole file written
   * atomically. The repository puts every change set waiting at that moment into one call, so
   * concurrent operations share one write. Core validates each change; a store written by
   * another process is checked against core's schema here, since no one else sees it on this path.
   */
  async transact(work: (reader: StoreReader) => Promise<WriteSet>): Promise<void> {
    await this.acquireLock();
    try {
      // Taken out of the cache: it is put back only once the write succeeded, so a failure
      // anywhere (a refused change set, a full disk) can never leave a half-applied table behind.
      const { table, bytes, source } = await this.takeTable();
      const writes = await work(table.reader());
      if (writes.puts.length === 0 && writes.logs.length === 0 && writes.deletes.length === 0 && !writes.version) {
        if (source) this.parsed = { source, table, bytes }; // unchanged: still the file's content
        return;
      }
      bytes.forget(writes);
      table.apply(writes);
      const encoded = bytes.encode(table);
      // The file was just read under this lock and parsed as a store (or is missing).
      await this.write(encoded, { currentSize: source?.length ?? 0 });
      this.parsed = { source: encoded, table, bytes };
    } finally {
      await this.releaseLock();
    }
  }

  async acquireLock(): Promise<void> {
    await this.refuseIrregularFiles(); // before the lock folder is made beside it
    await io("take the lock", () => this.lock.acquire());
  }

  async releaseLock(): Promise<void> {
    await this.lock.releaseLock();
  }

  async describe(): Promise<DriverDescription> {
    const [main, backup, lockStat, holder] = await Promise.all([
      fs.stat(this.path).catch(() => undefined),
      fs.stat(this.backupPath).catch(() => undefined),
      fs.stat(this.lockPath).catch(() => undefined),
      readHolder(this.lockPath),
    ]);
    return {
      driver: this.name,
      location: this.path,
      sizeBytes: main?.size ?? 0,
      ...(backup ? { lastBackupAt: Math.round(backup.mtimeMs) } : {}),
      lockHolder: holder
        ? { pid: holder.pid, host: holder.host, since: holder.since }
        : lockStat
          ? { since: Math.round(lockStat.mtimeMs) }
          : null,
      backupLocation: this.backupPath,
      lockLocation: this.lockPath,
    };
  }

  async close(): Promise<void> {
    await this.lock.releaseLock();
    this.parsed = undefined;
  }

  // -------------------------------------------------------------------------------------------

  /** Another process may have written since the lock was lost: writing now could overwrite its changes. */
  private refuseIfLockLost(): void {
    if (this.lock.compromised) {
      throw new StorageUnavailableError(`json-file: the lock ${this.lockPath} was lost; not writing over the store`);
    }
  }

  /**
   * Writes the store. `known` is passed when the caller read the file under the lock just now and
   * it parsed as a store (or was missing); otherwise (`saveData`) a symlinked store's target is
   * checked here first: nothing is ever written through a link to a file that is not a store.
   */
  private async write(bytes: Buffer, known?: { currentSize: number }): Promise<void> {
    if (bytes.length > this.maxStoreBytes) {
      // A store already over the limit (the limit was lowered) may still shrink.
      const currentSize = known?.currentSize ?? (await fs.stat(this.path).catch(() => undefined))?.size ?? 0;
      if (bytes.length > currentSize) throw this.tooLarge(bytes.length);
    }
    this.refuseIfLockLost();
    if (!known && (await io("inspect the store path", () => isSymlink(this.path)))) {
      const current = await io("read the store", () => readRegularFile(this.path));
      if (current.kind === "not-regular") throw this.notRegular(this.path, current.type);
      if (current.kind === "too-large" || (current.kind === "file" && !looksLikeStore(current.bytes))) {
        throw new CorruptDataError(
          `json-file: ${this.path} is a symlink to a file that does not look like a taskstore store; not writing through it (nothing was changed)`,
        );
      }
    }
    await this.autoBackup();
    const target = await io("resolve the store path", () => resolveTarget(this.path));
    await io("write the store", () => writeFileAtomic(target, bytes, this.unsynced(target)));
    this.wroteOnce = true;
  }

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

  /** The store and its backup must be regular files (or missing): a FIFO, a device, a folder is refused before anything is made beside it. */
  private async refuseIrregularFiles(): Promise<void> {
    for (const file of [this.path, this.backupPath]) {
      const seen = await io("inspect the store path", () => inspectFile(file, Number.MAX_SAFE_INTEGER));
      if (seen.kind === "not-regular") throw this.notRegular(file, seen.type);
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
      if (!isLoadableStore(parseStore(found.bytes, this.backupPath))) throw new Error(`${this.backupPath} fails the schema`);
    } catch (error) {
      if (error instanceof CorruptDataError) throw error;
      throw new CorruptDataError(`json-file: there is no usable backup at ${this.backupPath}`, { cause: error });
    }
    return found.bytes;
  }

  /** The store as a table: this instance's own when the file still holds the bytes it came from, else parsed and checked. */
  private async takeTable(): Promise<Omit<Parsed, "source"> & { source?: Buffer }> {
    const cached = this.parsed;
    this.parsed = undefined;
    const stored = await this.read();
    if (!stored) return { table: new TaskTable(), bytes: new StoreBytes() };
    if (cached && stored.equals(cached.source)) return { table: cached.table, bytes: cached.bytes, source: cached.source };
    return { table: this.tableOf(stored), bytes: new StoreBytes(), source: stored };
  }

  private tableOf(text: Buffer): TaskTable {
    const raw = parseStore(text, this.path);
    if (isLegacyData(raw)) throw new CorruptDataError(`json-file: ${this.path} is a legacy todo file; load the store to migrate it first`);
    const version = (raw as { version?: unknown }).version;
    // A newer major version is read as it is; core refuses to write it through the reader's version().
    if (typeof version === "string" && !isWritableVersion(version) && Array.isArray(raw.tasks)) return TaskTable.fromData(raw);
    try {
      return TaskTable.fromData(parseStorageData(raw));
    } catch (error) {
      throw new CorruptDataError(`json-file: ${this.path} fails the schema; load the store to recover it: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  /**
   * The store's bytes, or undefined when there is no file. Always read: a file's identity (inode,
   * size, stamps) is no proof that it is the file last seen, since a newer one can share it where
   * stamps are coarse (a second, a clock tick) and inode numbers are reused. Reading costs about
   * 1 ms per write at 10,000 tasks; the parse it can save (see takeTable) is what is expensive.
   */
  private async read(): Promise<Buffer | undefined> {
    const found = await io("read the store", () => readRegularFile(this.path));
    switch (found.kind) {
      case "missing":
        return undefined;
      case "file":
        return found.bytes;
      case "not-regular":
        throw this.notRegular(this.path, found.type);
      case "too-large":
        // Never "recovered": restore() refuses a store this size too.
        throw new CorruptDataError(
          `json-file: ${this.path} is ${found.size} bytes, more than this driver can read (${READ_LIMIT_BYTES}, V8's longest string); it was left as it is`,
        );
    }
  }

  /**
   * Before overwriting a store, copy it to the backup: on this instance's first write, then at
   * most every `backupIntervalMs` (the backup file's age decides, across processes). Only a store
   * that parses is copied, so a broken file never replaces a good backup.
   */
  private async autoBackup(): Promise<void> {
    if (this.wroteOnce) {
      const stat = await fs.stat(this.backupPath).catch(() => undefined);
      if (stat && Date.now() - stat.mtimeMs < this.backupIntervalMs) return;
    }
    const stored = await this.read();
    if (!stored) return;
    let parsed: unknown;
    try {
      parsed = parseStore(stored, this.path);
    } catch {
      return; // core restores or refuses an unreadable store before writing; nothing worth keeping
    }
    if (!isLoadableStore(parsed)) return;
    if (Array.isArray(parsed))
      await io("keep the legacy file", () => keepLegacy(this.names, stored, this.unsynced("the legacy copy of the store")));
    await io("write the backup", () => writeFileAtomic(this.backupPath, stored, this.unsynced(this.backupPath)));
  }
}
