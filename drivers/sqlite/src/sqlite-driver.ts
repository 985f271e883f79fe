import { realpathSync, statSync } from "node:fs";
import { resolve } from "node:path";
import {
  DRIVER_SPECIFICATION_VERSION,
  type DriverCapabilities,
  type DriverContext,
  type DriverDescription,
  type Mutex,
  numberOption,
  type RestoreResult,
  resolveOption,
  type StorageData,
  type StorageDriver,
  type StoreReader,
  sleep,
  TaskStoreError,
  type WriteSet,
} from "@taskstore/core";
import type Database from "better-sqlite3";
import { stageBackup, swapIn, writeBackup } from "./sqlite-backup.js";
import { gateFor, retryBusy } from "./sqlite-busy.js";
import { SqliteConnection, type SynchronousLevel } from "./sqlite-connection.js";
import { errors, isBusy, translate } from "./sqlite-errors.js";
import { type LockHolder, memoryLockDb, StoreLock } from "./sqlite-lock.js";
import { DB_SCHEMA_VERSION } from "./sqlite-migrations.js";
import { applyWork, readStore, type Statements, tryBegin, writeStore } from "./sqlite-statements.js";
import { inspectFile, type NotAStoreError } from "./sqlite-store-file.js";

export type { SynchronousLevel } from "./sqlite-connection.js";

export interface SQLiteStorageDriverOptions {
  /** The database file; created (with its folder) if missing. Give this or `database`. */
  path?: string;
  /** A better-sqlite3 `Database` you opened. The driver uses it and never closes it. */
  database?: Database.Database;
  /**
   * Default "FULL": a change whose promise resolved survives a crash of the process and of the
   * machine (the WAL is fsynced at every commit). "NORMAL" survives a process crash but may lose
   * the last commits on power loss or an OS crash, in exchange for far fewer fsyncs.
   */
  synchronous?: SynchronousLevel;
  /** How long one statement waits inside SQLite for another connection's lock. Default 2,000 ms. */
  busyTimeoutMs?: number;
  /**
   * How long `acquireLock()` waits, and how long a transaction keeps retrying `BEGIN IMMEDIATE`
   * while other processes write, before a `LockTimeoutError`. Default 30,000 ms.
   */
  lockTimeoutMs?: number;
  /**
   * How long a store lock whose holder vanished (another host, or a reused pid) blocks others:
   * the holder renews it every third of this. Default 30,000 ms.
   */
  lockExpiryMs?: number;
  /** @deprecated Use `lockExpiryMs` (the same value); accepted until the next minor version. */
  lockStaleMs?: number;
  /** Where `backup()` writes and `restore()` reads. Default `<path>.backup`. */
  backupPath?: string;
}

/**
 * A taskstore driver on SQLite: one row per task (its fields as JSON, with parent and status as
 * indexed columns), one row per log entry, WAL, and every change set one `BEGIN IMMEDIATE`
 * transaction. See the README for the layout, the lock and what each option means.
 */
export class SQLiteStorageDriver implements StorageDriver {
  readonly name = "sqlite";
  /** The contract this driver was written against. */
  readonly specificationVersion = DRIVER_SPECIFICATION_VERSION;
  readonly capabilities: Partial<DriverCapabilities>;
  /** The database file (absolute), or undefined for a caller's in-memory database. */
  readonly path: string | undefined;
  /** Where `backup()` writes and `restore()` reads (absolute), or undefined for an in-memory database. */
  readonly backupPath: string | undefined;
  private readonly connection: SqliteConnection;
  /** Serializes the work of every instance in this process on the same database (see sqlite-busy.ts). */
  private readonly gate: Mutex;
  private readonly lock: StoreLock;
  private readonly synchronous: SynchronousLevel;
  private readonly lockTimeoutMs: number;
  private context: DriverContext | undefined;

  constructor(options: SQLiteStorageDriverOptions) {
    if (!options || (options.path === undefined) === (options.database === undefined)) {
      throw errors.invalidOption("path", "give exactly one of { path } or { database }");
    }
    this.synchronous = options.synchronous ?? "FULL";
    if (!["OFF", "NORMAL", "FULL", "EXTRA"].includes(this.synchronous)) {
      throw errors.invalidOption("synchronous", `must be OFF, NORMAL, FULL or EXTRA, not ${String(this.synchronous)}`);
    }
    this.lockTimeoutMs = numberOption(options.lockTimeoutMs, "lockTimeoutMs", this.name, 30_000);
    const lockExpiryMs = numberOption(resolveOption(options, "lockExpiryMs", "lockStaleMs", this.name), "lockExpiryMs", this.name, 30_000);
    this.connection = new SqliteConnection(options, {
      synchronous: this.synchronous,
      busyTimeoutMs: numberOption(options.busyTimeoutMs, "busyTimeoutMs", this.name, 2_000),
      lockTimeoutMs: this.lockTimeoutMs,
    });
    this.path = this.connection.path;
    this.backupPath = options.backupPath ? resolve(options.backupPath) : this.path ? `${this.path}.backup` : undefined;
    this.gate = gateFor(this.path ?? (options.database as Database.Database));
    const lockPath = this.path ? `${this.path}.lock` : undefined;
    this.lock = new StoreLock(
      () => (lockPath ? this.connection.openLockFile(lockPath) : memoryLockDb(options.database as Database.Database)),
      lockPath !== undefined,
      this.lockTimeoutMs,
      lockExpiryMs,
      (error) => this.context?.warn(error),
    );
    this.capabilities = {
      locking: true,
      incremental: true,
      backup: this.backupPath !== undefined,
      // Restoring replaces the file, which only works on a connection the driver owns.
      restore: this.connection.owned,
      persistent: this.path !== undefined,
      changeNotification: false,
    };
  }

  attach(context: DriverContext): void {
    this.context = context;
  }

  async initialize(): Promise<void> {
    await this.gate.run(async () => {
      if (!this.connection.usable) await this.connection.open();
    });
  }

  async loadData(): Promise<StorageData> {
    // better-sqlite3 is synchronous: without this a caller that loads in a loop (a poller, a
    // reader waiting for a "stop" on stdin) would never let timers and I/O run.
    await new Promise<void>((resolve) => setImmediate(resolve));
    return this.gate.run(async () => {
      const s = await this.connection.ready();
      return retryBusy(() => readStore(this.connection.database, s), this.lockTimeoutMs, "load").catch((error) => {
        throw translate(error, "load", this.path);
      });
    });
  }

  async saveData(data: StorageData): Promise<void> {
    await this.write(async (s) => writeStore(s, data));
  }

  async transact(work: (reader: StoreReader) => Promise<WriteSet>): Promise<void> {
    await this.write((s) => applyWork(s, work));
  }

  async backup(): Promise<void> {
    const target = this.backupPath;
    if (!target) throw errors.unsupported("an in-memory database needs the backupPath option to back up");
    await this.gate.run(async () => {
      await this.connection.ready();
      await writeBackup(this.connection.database, target).catch((error) => {
        throw translate(error, "backup", this.path);
      });
    });
  }

  async restore(): Promise<RestoreResult> {
    const path = this.path;
    const source = this.backupPath;
    if (!this.connection.owned || !path || !source) throw errors.unsupported("restore needs a database the driver opened by path");
    // Restoring moves the current file aside: never a FIFO, a device or someone's text file.
    inspectFile(path, "the store");
    // Under the store lock (core already holds it when it restores): other instances' writes
    // wait, then find the replaced file by its inode and reopen it.
    const ownLock = !this.lock.held;
    if (ownLock) await this.acquireLock();
    try {
      return await this.gate.run(async () => {
        // Looked at again under the lock. Through a symlink, the link's target is replaced (where
        // SQLite keeps the data and its -wal), and the link stays a link.
        const file = inspectFile(path, "the store").kind === "missing" ? path : realpathSync(path);
        // The backup is copied first: if it is missing or unusable, nothing has been touched.
        const staged = await stageBackup(source, file);
        this.connection.close();
        const movedTo = swapIn(staged, file);
        await this.connection.open();
        return { ...(movedTo ? { movedTo } : {}), restoredFrom: source };
      });
    } finally {
      if (ownLock) await this.lock.release();
    }
  }

  async acquireLock(): Promise<void> {
    await this.lock.acquire();
    try {
      await this.drainWrites();
    } catch (error) {
      await this.lock.release().catch(() => undefined);
      throw error;
    }
  }

  async releaseLock(): Promise<void> {
    await this.lock.release();
  }

  async describe(): Promise<DriverDescription> {
    const size = (file: string): number => {
      try {
        return statSync(file).size;
      } catch {
        return 0;
      }
    };
    let lastBackupAt: number | undefined;
    try {
      if (this.backupPath) lastBackupAt = Math.floor(statSync(this.backupPath).mtimeMs);
    } catch {}
    let lockHolder: LockHolder | null = null;
    let refused: NotAStoreError | undefined;
    try {
      lockHolder = await this.lock.holder();
    } catch (error) {
      // A path that is not a store (NotAStoreError): describe it, never create a lock file beside it.
      if (!TaskStoreError.hasCode(error, "VALIDATION")) throw error;
      refused = error as NotAStoreError;
    }
    const openError = this.connection.openError ?? refused;
    return {
      driver: this.name,
      location: this.path ?? ":memory:",
      sizeBytes: this.path ? size(this.path) + size(`${this.path}-wal`) : 0,
      ...(lastBackupAt !== undefined ? { lastBackupAt } : {}),
      lockHolder,
      schemaVersion: DB_SCHEMA_VERSION,
      synchronous: this.synchronous,
      ...(openError ? { openError: openError.message } : {}),
    };
  }

  async close(): Promise<void> {
    await this.gate.run(async () => {
      try {
        await this.lock.close();
      } finally {
        this.connection.close();
      }
    });
  }

  // -------------------------------------------------------------------------------------------

  /**
   * Runs `change` in one BEGIN IMMEDIATE transaction, serialized with this process's other
   * instances. While another instance holds the store lock, it waits (outside the gate, so that
   * the holder can work) for up to `lockTimeoutMs`. The lock row is read after BEGIN IMMEDIATE:
   * a holder's acquireLock() passes through the write lock once after taking the row (see
   * `drainWrites`), so every transaction either finished before that or sees the row.
   */
  private async write(change: (s: Statements) => Promise<void>): Promise<void> {
    const deadline = Date.now() + this.lockTimeoutMs;
    let delay = 5;
    for (;;) {
      const blocked = await this.gate.run(async (): Promise<LockHolder | "busy" | undefined> => {
        const s = await this.connection.ready();
        // The usual case takes the write lock at once; only a busy database waits (asynchronously).
        if (!tryBegin(s)) await retryBusy(() => s.begin.run(), Math.max(0, deadline - Date.now()), "begin a write");
        try {
          let holder: LockHolder | "busy" | undefined;
          try {
            holder = this.lock.otherHolder();
          } catch (error) {
            if (!isBusy(error)) throw error;
            holder = "busy"; // the lock row is being written right now: look again shortly
          }
          if (holder) {
            s.rollback.run();
            return holder;
          }
          await change(s);
          s.commit.run();
          return undefined;
        } catch (error) {
          if (this.connection.database.inTransaction) s.rollback.run();
          throw translate(error, "write", this.path);
        }
      });
      if (!blocked) return;
      if (Date.now() >= deadline) {
        const by = blocked === "busy" ? "" : ` by pid ${blocked.pid} on ${blocked.host} since ${new Date(blocked.since).toISOString()}`;
        throw errors.lockTimeout(`a write waited ${this.lockTimeoutMs} ms for the store lock held${by}`);
      }
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 100);
    }
  }

  /**
   * Takes and releases the database's write lock once (an empty transaction: nothing is written).
   * A transaction that began before the lock row was written has committed when this returns; one
   * that begins later reads the row and waits. Skipped when this instance has no usable database
   * (never opened, or corrupt: then no other instance can commit either).
   */
  private async drainWrites(): Promise<void> {
    if (!this.connection.opened) return;
    await this.gate.run(async () => {
      let s: Statements;
      try {
        s = await this.connection.ready();
      } catch (error) {
        if (TaskStoreError.hasCode(error, "CORRUPT_DATA")) return;
        throw error;
      }
      await retryBusy(() => s.begin.run(), this.lockTimeoutMs, "wait for writes in progress");
      s.commit.run();
    });
  }
}
