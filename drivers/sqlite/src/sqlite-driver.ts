import { chmodSync, closeSync, fsyncSync, openSync, realpathSync, renameSync, statSync, unlinkSync } from "node:fs";
import { dirname, resolve } from "node:path";
import {
  CorruptDataError,
  DRIVER_SPECIFICATION_VERSION,
  type DriverCapabilities,
  type DriverContext,
  type DriverDescription,
  LockTimeoutError,
  type LogEntry,
  type RestoreResult,
  SCHEMA_VERSION,
  type StorageData,
  type StorageDriver,
  StorageUnavailableError,
  type StoredTask,
  type StoreReader,
  type TaskBody,
  type TaskHead,
  ValidationError,
  type WriteSet,
} from "@taskstore/core";
import Database from "better-sqlite3";
import { type Gate, gateFor, isBusy, isCorrupt, retryBusy, sleep } from "./busy.js";
import { type LockHolder, StoreLock } from "./lock.js";
import { DB_SCHEMA_VERSION, MIGRATIONS, SCHEMA_TABLES } from "./migrations.js";
import {
  checkLockSchema,
  checkSideFiles,
  checkStoreSchema,
  createExclusive,
  inspectFile,
  NotAStoreError,
  prepareFile,
  tighten,
} from "./store-file.js";

/** SQLite's `synchronous` levels in WAL mode; see the README for what each one survives. */
export type SynchronousLevel = "OFF" | "NORMAL" | "FULL" | "EXTRA";

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
  /** A lock whose holder stopped renewing it (another host, or a reused pid) expires after this. Default 30,000 ms. */
  lockStaleMs?: number;
  /** Where `backup()` writes and `restore()` reads. Default `<path>.backup`. */
  backupPath?: string;
}

interface TaskRow {
  id: string;
  body: string;
}

interface LogSpan {
  lo: number | null;
  hi: number | null;
}

interface LogRow {
  task_id: string;
  ts: number;
  type: string;
  source: string | null;
  output: string;
  extra: string | null;
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
  readonly backupPath: string | undefined;
  private readonly owned: boolean;
  private db: Database.Database | undefined;
  /** The file's identity when we opened it: a restore by another instance replaces the file. */
  private inode: number | undefined;
  /** Why the database could not be opened (it is corrupt): loadData reports it, restore fixes it. */
  private openError: Error | undefined;
  private readonly gate: Gate;
  private readonly lock: StoreLock;
  private readonly synchronous: SynchronousLevel;
  private readonly busyTimeoutMs: number;
  private readonly lockTimeoutMs: number;
  private context: DriverContext | undefined;
  private statements: Statements | undefined;

  constructor(options: SQLiteStorageDriverOptions) {
    if (!options || (options.path === undefined) === (options.database === undefined)) {
      throw new TypeError("sqlite: give exactly one of { path } or { database }");
    }
    this.synchronous = options.synchronous ?? "FULL";
    if (!["OFF", "NORMAL", "FULL", "EXTRA"].includes(this.synchronous)) {
      throw new TypeError(`sqlite: synchronous must be OFF, NORMAL, FULL or EXTRA, not ${String(this.synchronous)}`);
    }
    this.busyTimeoutMs = options.busyTimeoutMs ?? 2_000;
    this.lockTimeoutMs = options.lockTimeoutMs ?? 30_000;
    this.owned = options.database === undefined;
    if (options.database) {
      this.db = options.database;
      this.path = options.database.memory ? undefined : resolve(options.database.name);
    } else {
      this.path = resolve(options.path as string);
    }
    this.backupPath = options.backupPath ? resolve(options.backupPath) : this.path ? `${this.path}.backup` : undefined;
    this.gate = gateFor(this.path ?? (options.database as Database.Database));
    const lockPath = this.path ? `${this.path}.lock` : undefined;
    this.lock = new StoreLock(
      () => {
        if (!lockPath) return memoryLockDb(options.database as Database.Database);
        return this.openLockFile(lockPath);
      },
      lockPath !== undefined,
      this.lockTimeoutMs,
      options.lockStaleMs ?? 30_000,
      (error) => this.context?.warn(error),
    );
    this.capabilities = {
      locking: true,
      incremental: true,
      backup: this.backupPath !== undefined,
      // Restoring replaces the file, which only works on a connection the driver owns.
      restore: this.owned,
      persistent: this.path !== undefined,
      changeNotification: false,
    };
  }

  attach(context: DriverContext): void {
    this.context = context;
  }

  async initialize(): Promise<void> {
    await this.gate.run(async () => {
      if (this.statements && this.isCurrent()) return;
      await this.open();
    });
  }

  async loadData(): Promise<StorageData> {
    // better-sqlite3 is synchronous: without this a caller that loads in a loop (a poller, a
    // reader waiting for a "stop" on stdin) would never let timers and I/O run.
    await new Promise<void>((resolve) => setImmediate(resolve));
    return this.gate.run(async () => {
      const s = await this.ready();
      return retryBusy(() => this.readAll(s), this.lockTimeoutMs, "load").catch((error) => {
        throw this.translate(error, "load");
      });
    });
  }

  async saveData(data: StorageData): Promise<void> {
    await this.write(async (s) => {
      s.deleteAllLogs.run();
      s.deleteAllTasks.run();
      for (const task of data.tasks) {
        const { logs, ...body } = task;
        putBody(s, body);
        logs.forEach((entry, n) => {
          insertLog(s, task.id, n, entry);
        });
      }
      const { version, tasks: _tasks, metadata, ...extra } = data;
      const { lastUpdated, totalTasks: _total, ...extraMeta } = metadata;
      s.setMeta.run("version", exact(version, ["version"]));
      s.setMeta.run("extra", JSON.stringify(extra));
      s.setMeta.run("metadataExtra", JSON.stringify(extraMeta));
      s.setMeta.run("lastUpdated", String(lastUpdated));
    });
  }

  transact = async (work: (reader: StoreReader) => Promise<WriteSet>): Promise<void> => {
    await this.write(async (s) => {
      // What this transaction read: a put that leaves parent and status as they were rewrites
      // only the body (an UPDATE naming an indexed column rewrites its index pages, even when
      // the value is the same), and an append reuses the log span it already looked up.
      const seen = new Map<string, { parentId: string | undefined; status: string; span: LogSpan }>();
      // Ids read and found absent: their log is empty too (a delete takes the log with the task).
      const absent = new Set<string>();
      const reader: StoreReader = {
        get: async (id) => {
          const row = s.getTask.get(exact(id, ["id"])) as { body: string } | undefined;
          if (!row) {
            absent.add(id);
            return undefined;
          }
          const span = s.logSpan.get(id, id) as LogSpan;
          const head = parseJson(row.body, `task ${id}`) as TaskHead;
          seen.set(id, { parentId: head.parentId, status: head.status, span });
          head.logCount = span.lo === null ? 0 : (span.hi as number) - span.lo + 1;
          return head;
        },
        version: async () => readVersion(s),
      };
      const writes = await work(reader);
      for (const body of writes.puts) {
        const before = seen.get(body.id);
        if (before && before.parentId === body.parentId && before.status === body.status) {
          s.setBody.run(JSON.stringify(body), exact(body.id, ["tasks", body.id, "id"]));
        } else {
          putBody(s, body);
        }
      }
      for (const log of writes.logs) {
        // Log rows are numbered 0, 1, 2... per task; trimming removes the lowest, so the span is dense.
        let first = 0;
        let next = 0;
        if (log.replace) {
          // A task this transaction created has no log rows to replace (the usual create).
          if (!absent.has(log.id)) s.deleteLogs.run(log.id);
        } else {
          const span = seen.get(log.id)?.span ?? (s.logSpan.get(log.id, log.id) as LogSpan);
          if (span.lo !== null) [first, next] = [span.lo, (span.hi as number) + 1];
        }
        // Entries beyond `keep` would be trimmed at once: never insert them.
        const skip = Math.max(0, log.entries.length - log.keep);
        for (let i = skip; i < log.entries.length; i++) insertLog(s, log.id, next + i, log.entries[i] as LogEntry);
        const last = next + log.entries.length - 1;
        if (last - first + 1 > log.keep) s.trimLogs.run(log.id, last - log.keep);
      }
      for (const id of writes.deletes) {
        s.deleteLogs.run(exact(id, ["deletes", id]));
        s.deleteTask.run(id);
      }
      if (writes.version && newer(writes.version, readVersion(s))) s.setMeta.run("version", exact(writes.version, ["version"]));
      // Every other change moves some task's updatedAt, from which loadData derives lastUpdated;
      // a delete may not, so it is recorded (one row fewer to write per append).
      if (writes.deletes.length > 0) s.setMeta.run("lastUpdated", String(Date.now()));
    });
  };

  async backup(): Promise<void> {
    const target = this.backupPath;
    if (!target) throw new StorageUnavailableError("sqlite: an in-memory database needs the backupPath option to back up");
    await this.gate.run(async () => {
      const db = await this.ready().then(() => this.db as Database.Database);
      const temp = `${target}.tmp-${process.pid}-${Date.now()}`;
      let created = false;
      try {
        createExclusive(temp);
        created = true;
        await db.backup(temp);
        // A self-contained file (no -wal beside it), checked before it replaces the last good backup.
        const copy = new Database(temp);
        try {
          copy.pragma("journal_mode = DELETE");
          const check = copy.pragma("quick_check", { simple: true });
          if (check !== "ok")
            throw new CorruptDataError(`sqlite: the database fails its integrity check (${String(check)}); the last backup was kept`);
        } finally {
          copy.close();
        }
        chmodSync(temp, 0o600);
        syncFile(temp);
        renameSync(temp, target);
        syncDir(dirname(target));
      } catch (error) {
        try {
          if (created) unlinkSync(temp); // our own unfinished copy, never the store
        } catch {}
        throw this.translate(error, "backup");
      }
    });
  }

  async restore(): Promise<RestoreResult> {
    const path = this.path;
    const source = this.backupPath;
    if (!this.owned || !path || !source) throw new StorageUnavailableError("sqlite: restore needs a database the driver opened by path");
    // Restoring moves the current file aside: never a FIFO, a device or someone's text file.
    inspectFile(path, "the store");
    // Under the store lock (core already holds it when it restores): other instances' writes
    // wait, then find the replaced file by its inode and reopen it.
    const ownLock = !this.lock.held;
    if (ownLock) await this.acquireLock();
    try {
      return await this.replaceWithBackup(path, source);
    } finally {
      if (ownLock) await this.lock.release();
    }
  }

  private replaceWithBackup(linkPath: string, source: string): Promise<RestoreResult> {
    return this.gate.run(async () => {
      // Looked at again under the lock. Through a symlink, the link's target is replaced (where
      // SQLite keeps the data and its -wal), and the link stays a link.
      const state = inspectFile(linkPath, "the store");
      const path = state.kind === "missing" ? linkPath : realpathSync(linkPath);
      // Copy the backup first: if it is missing or unusable, nothing has been touched.
      const temp = `${path}.restore-${process.pid}-${Date.now()}`;
      let created = false;
      try {
        statSync(source);
        const backup = new Database(source, { readonly: true, fileMustExist: true });
        try {
          const check = backup.pragma("quick_check", { simple: true });
          if (check !== "ok") throw new Error(`integrity check: ${String(check)}`);
          createExclusive(temp);
          created = true;
          await backup.backup(temp);
        } finally {
          backup.close();
        }
        chmodSync(temp, 0o600);
        syncFile(temp);
      } catch (error) {
        try {
          if (created) unlinkSync(temp);
        } catch {}
        throw new CorruptDataError(`sqlite: there is no usable backup at ${source}: ${(error as Error).message}`, { cause: error });
      }
      this.closeConnection();
      const movedTo = `${path}.aside-${new Date().toISOString().replace(/[:.]/g, "-")}`;
      let moved = false;
      // The -wal belongs to the replaced file: it goes aside with it, never onto the backup.
      for (const suffix of ["-wal", "-shm", ""]) {
        try {
          renameSync(`${path}${suffix}`, `${movedTo}${suffix}`);
          if (suffix === "") moved = true;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
        }
      }
      renameSync(temp, path);
      syncDir(dirname(path));
      await this.open();
      return { ...(moved ? { movedTo } : {}), restoredFrom: source };
    });
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

  /**
   * Takes and releases the database's write lock once (an empty transaction: nothing is written).
   * A transaction that began before the lock row was written has committed when this returns; one
   * that begins later reads the row and waits. Skipped when this instance has no usable database
   * (never opened, or corrupt: then no other instance can commit either).
   */
  private async drainWrites(): Promise<void> {
    if (!this.statements) return;
    await this.gate.run(async () => {
      let s: Statements;
      try {
        s = await this.ready();
      } catch (error) {
        if (error instanceof CorruptDataError) return;
        throw error;
      }
      await retryBusy(() => s.begin.run(), this.lockTimeoutMs, "wait for writes in progress");
      s.commit.run();
    });
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
      // A path that is not a store: describe it, never create a lock file beside it.
      if (!(error instanceof NotAStoreError)) throw error;
      refused = error;
    }
    const openError = this.openError ?? refused;
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
        this.closeConnection();
      }
    });
  }

  // -------------------------------------------------------------------------------------------

  /**
   * Runs `change` in one BEGIN IMMEDIATE transaction, serialized with this process's other
   * instances. While another instance holds the store lock, it waits (outside the gate, so that
   * the holder can work) for up to `lockTimeoutMs`. The lock row is read after BEGIN IMMEDIATE:
   * a holder's acquireLock() passes through the write lock once after taking the row (see
   * acquireLock), so every transaction either finished before that or sees the row.
   */
  private async write(change: (s: Statements) => Promise<void>): Promise<void> {
    const deadline = Date.now() + this.lockTimeoutMs;
    let delay = 5;
    for (;;) {
      const blocked = await this.gate.run(async (): Promise<LockHolder | "busy" | undefined> => {
        const s = await this.ready();
        const db = this.db as Database.Database;
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
          if (db.inTransaction) s.rollback.run();
          throw this.translate(error, "write");
        }
      });
      if (!blocked) return;
      if (Date.now() >= deadline) {
        const by = blocked === "busy" ? "" : ` by pid ${blocked.pid} on ${blocked.host} since ${new Date(blocked.since).toISOString()}`;
        throw new LockTimeoutError(`sqlite: a write waited ${this.lockTimeoutMs} ms for the store lock held${by}`);
      }
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 100);
    }
  }

  /** The statements of an open, current, migrated connection; reopens after a restore elsewhere. */
  private async ready(): Promise<Statements> {
    if (!this.statements || !this.isCurrent()) await this.open();
    if (this.openError || !this.statements) {
      throw new CorruptDataError(`sqlite: ${this.path ?? ":memory:"} is not a usable database: ${this.openError?.message}`, {
        cause: this.openError,
      });
    }
    return this.statements;
  }

  /**
   * Opens (or reopens) the connection, sets WAL and the pragmas, and migrates. A corrupt file is
   * not an error here: it is remembered, so that loadData can report it and core can restore.
   * A path that holds something other than a store of this driver is refused with
   * `NotAStoreError` before anything is changed (see `openStoreFile`).
   */
  private async open(): Promise<void> {
    if (this.owned) this.closeConnection();
    this.statements = undefined;
    this.openError = undefined;
    try {
      if (this.owned) {
        await this.openStoreFile(this.path as string);
      } else if (this.path) {
        this.inode = statSync(this.path).ino;
      }
      const db = this.db as Database.Database;
      await retryBusy(
        () => {
          db.pragma("journal_mode = WAL");
          db.pragma(`synchronous = ${this.synchronous}`);
        },
        this.lockTimeoutMs,
        "open",
      );
      await this.migrate(db);
      this.statements = prepare(db);
    } catch (error) {
      if (this.owned) this.closeConnection();
      if (!isCorrupt(error)) throw error;
      this.openError = error as Error;
    }
  }

  private async migrate(db: Database.Database): Promise<void> {
    const current = () => db.pragma("user_version", { simple: true }) as number;
    if (current() === DB_SCHEMA_VERSION) return;
    await retryBusy(() => db.exec("BEGIN IMMEDIATE"), this.lockTimeoutMs, "migrate");
    try {
      const from = current(); // another process may have migrated meanwhile
      if (from > DB_SCHEMA_VERSION) throw newerSchemaError(from);
      for (let v = from; v < DB_SCHEMA_VERSION; v++) (MIGRATIONS[v] as (db: Database.Database) => void)(db);
      db.pragma(`user_version = ${DB_SCHEMA_VERSION}`);
      db.exec("COMMIT");
    } catch (error) {
      if (db.inTransaction) db.exec("ROLLBACK");
      throw error;
    }
  }

  /**
   * Check before touching: the path must be missing (then it is created, 0600), an empty regular
   * file, or a regular file (a symlink to one is followed) holding a SQLite database that is a
   * store of this driver or has no tables yet; SQLite's side files beside it must be plain files.
   * Anything else is refused with `NotAStoreError` and left exactly as it was: no chmod, no
   * `-wal`/`-shm`/`.lock`, no journal. A FIFO or a device is never even opened. Only then is the
   * file made 0600 (it is ours) and switched to WAL, by `open()`.
   */
  private async openStoreFile(path: string): Promise<void> {
    const state = prepareFile(path, "the store");
    checkSideFiles(path, "the store");
    // fileMustExist: SQLite never creates the file (with the umask's mode); prepareFile did, 0600.
    const db = new Database(path, { timeout: this.busyTimeoutMs, fileMustExist: true });
    this.db = db;
    const opened = statSync(path);
    if (opened.ino !== state.ino || opened.dev !== state.dev) {
      this.closeConnection();
      throw new StorageUnavailableError(`sqlite: ${path} was replaced while it was being opened; try again`);
    }
    this.inode = opened.ino;
    // Reads only (a damaged file throws SQLITE_CORRUPT/NOTADB here: open() remembers it for restore).
    if (state.kind === "sqlite") {
      await retryBusy(() => checkStoreSchema(db, path, SCHEMA_TABLES), this.lockTimeoutMs, "open");
      const version = db.pragma("user_version", { simple: true }) as number;
      if (version > DB_SCHEMA_VERSION) throw newerSchemaError(version);
    }
    // Tasks may hold private data: the file is the owner's only, whatever the umask.
    if (!state.created) tighten(path);
  }

  /**
   * The lock file is never created beside a path that is not a store. Cheap once the database was
   * opened (it was checked then, or found damaged, which restore handles); otherwise the same
   * checks as opening, on a connection that only reads.
   */
  private checkStoreBeforeLock(path: string): void {
    const state = inspectFile(path, "the store");
    if (state.kind !== "sqlite" || this.statements || this.openError) return;
    const db = new Database(path, { timeout: this.busyTimeoutMs, fileMustExist: true });
    try {
      checkStoreSchema(db, path, SCHEMA_TABLES);
    } catch (error) {
      // Damaged (restore's business) or busy (a SQLite program is writing it right now): opening
      // it for real will tell.
      if (!isCorrupt(error) && !isBusy(error)) throw error;
    } finally {
      db.close();
    }
  }

  /**
   * The store lock's file, `<path>.lock`, checked before it is touched like the store itself: it
   * is never created (nor anything else changed) beside a store path that is not a store, and one
   * that exists must be a SQLite file holding only the `lock` table.
   */
  private openLockFile(lockPath: string): Database.Database {
    if (this.owned) this.checkStoreBeforeLock(this.path as string);
    const state = prepareFile(lockPath, "the lock file");
    checkSideFiles(lockPath, "the lock file");
    const db = new Database(lockPath, { timeout: this.busyTimeoutMs, fileMustExist: true });
    try {
      if (state.kind === "sqlite") {
        try {
          checkLockSchema(db, lockPath);
        } catch (error) {
          // Busy: another connection is writing the lock row this instant; it is a lock file.
          if (!isBusy(error)) throw error;
        }
      }
      if (!state.created) tighten(lockPath);
    } catch (error) {
      db.close();
      throw error;
    }
    return db;
  }

  private isCurrent(): boolean {
    if (!this.path) return true;
    try {
      return statSync(this.path).ino === this.inode;
    } catch {
      return false;
    }
  }

  private readAll(s: Statements): StorageData {
    const db = this.db as Database.Database;
    db.exec("BEGIN"); // one snapshot for both tables
    try {
      const tasks = new Map<string, StoredTask>();
      let lastUpdated = 0;
      for (const row of s.allTasks.iterate() as IterableIterator<TaskRow>) {
        const task = parseJson(row.body, `task ${row.id}`) as StoredTask;
        task.logs = [];
        tasks.set(row.id, task);
        if (task.updatedAt > lastUpdated) lastUpdated = task.updatedAt;
      }
      for (const row of s.allLogs.iterate() as IterableIterator<LogRow>) {
        tasks.get(row.task_id)?.logs.push(entryOf(row));
      }
      const meta = new Map((s.allMeta.all() as { key: string; value: string }[]).map((row) => [row.key, row.value]));
      db.exec("COMMIT");
      const extra = parseJson(meta.get("extra") ?? "{}", "meta.extra") as Record<string, unknown>;
      const extraMeta = parseJson(meta.get("metadataExtra") ?? "{}", "meta.metadataExtra") as Record<string, unknown>;
      return {
        ...extra,
        version: meta.get("version") ?? SCHEMA_VERSION,
        tasks: [...tasks.values()],
        metadata: { ...extraMeta, lastUpdated: Math.max(lastUpdated, Number(meta.get("lastUpdated") ?? 0)), totalTasks: tasks.size },
      };
    } finally {
      if (db.inTransaction) db.exec("ROLLBACK");
    }
  }

  /** SQLite's corruption codes become CorruptDataError; everything else is thrown as it is. */
  private translate(error: unknown, what: string): unknown {
    if (isCorrupt(error)) {
      return new CorruptDataError(`sqlite: ${what}: ${this.path ?? ":memory:"} is damaged: ${(error as Error).message}`, { cause: error });
    }
    return error;
  }

  private closeConnection(): void {
    this.statements = undefined;
    if (this.owned && this.db?.open) this.db.close();
    if (this.owned) this.db = undefined;
  }
}

// ---------------------------------------------------------------------------------------------

type Statements = ReturnType<typeof prepare>;

function prepare(db: Database.Database) {
  return {
    begin: db.prepare("BEGIN IMMEDIATE"),
    commit: db.prepare("COMMIT"),
    rollback: db.prepare("ROLLBACK"),
    getTask: db.prepare("SELECT body FROM tasks WHERE id = ?"),
    // Two subqueries, so each is one index seek (min and max together would scan).
    logSpan: db.prepare(
      "SELECT (SELECT min(n) FROM task_logs WHERE task_id = ?) AS lo, (SELECT max(n) FROM task_logs WHERE task_id = ?) AS hi",
    ),
    putTask: db.prepare(
      "INSERT INTO tasks (id, parent_id, status, body) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET parent_id = excluded.parent_id, status = excluded.status, body = excluded.body",
    ),
    setBody: db.prepare("UPDATE tasks SET body = ? WHERE id = ?"),
    deleteTask: db.prepare("DELETE FROM tasks WHERE id = ?"),
    insertLog: db.prepare("INSERT INTO task_logs (task_id, n, ts, type, source, output, extra) VALUES (?, ?, ?, ?, ?, ?, ?)"),
    deleteLogs: db.prepare("DELETE FROM task_logs WHERE task_id = ?"),
    trimLogs: db.prepare("DELETE FROM task_logs WHERE task_id = ? AND n <= ?"),
    deleteAllTasks: db.prepare("DELETE FROM tasks"),
    deleteAllLogs: db.prepare("DELETE FROM task_logs"),
    allTasks: db.prepare("SELECT id, body FROM tasks ORDER BY seq"),
    allLogs: db.prepare("SELECT task_id, ts, type, source, output, extra FROM task_logs ORDER BY task_id, n"),
    allMeta: db.prepare("SELECT key, value FROM meta"),
    getMeta: db.prepare("SELECT value FROM meta WHERE key = ?").pluck(),
    setMeta: db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
  };
}

function putBody(s: Statements, body: TaskBody): void {
  const where = ["tasks", body.id];
  s.putTask.run(
    exact(body.id, [...where, "id"]),
    body.parentId === undefined || body.parentId === null ? null : exact(body.parentId, [...where, "parentId"]),
    exact(body.status, [...where, "status"]),
    // JSON.stringify escapes a lone surrogate ("\ud800"): the body keeps every string exactly.
    JSON.stringify(body),
  );
}

const wellFormed = (value: string): boolean => (value as string & { isWellFormed(): boolean }).isWellFormed();

/**
 * A string bound to a TEXT column as it is. better-sqlite3 binds text as UTF-8, which would
 * silently replace a lone surrogate (a string that is not well-formed Unicode) with U+FFFD: such a
 * string is refused with `VALIDATION` instead (core refuses it on every write before a driver sees
 * it; this guards direct callers of saveData/transact). Everything else, NUL included, is stored
 * exactly. Non-strings pass through.
 */
function exact<T>(value: T, path: (string | number)[]): T {
  if (typeof value !== "string" || wellFormed(value)) return value;
  const index = value.search(/\p{Surrogate}/u);
  const unit = value.charCodeAt(index).toString(16).toUpperCase();
  throw new ValidationError(
    [{ path, rule: "well_formed", message: `has a lone surrogate (U+${unit}) at index ${index}; strings must be well-formed Unicode` }],
    { subject: "sqlite" },
  );
}

const KNOWN_ENTRY_FIELDS = new Set(["timestamp", "output", "type", "source"]);

function insertLog(s: Statements, id: string, n: number, entry: LogEntry): void {
  let extra: Record<string, unknown> | undefined;
  for (const key of Object.keys(entry)) {
    if (KNOWN_ENTRY_FIELDS.has(key)) continue;
    extra ??= {};
    Object.defineProperty(extra, key, { value: (entry as Record<string, unknown>)[key], enumerable: true });
  }
  const where = ["tasks", id, "logs", n];
  s.insertLog.run(
    exact(id, where),
    n,
    entry.timestamp,
    exact(entry.type, [...where, "type"]),
    exact(entry.source ?? null, [...where, "source"]),
    exact(entry.output, [...where, "output"]),
    extra ? JSON.stringify(extra) : null,
  );
}

function entryOf(row: LogRow): LogEntry {
  const entry = { timestamp: row.ts, output: row.output, type: row.type } as LogEntry;
  if (row.source !== null) entry.source = row.source;
  if (row.extra !== null) Object.assign(entry, parseJson(row.extra, "log entry"));
  return entry;
}

/** BEGIN IMMEDIATE; false when the database is busy (then nothing began). */
function tryBegin(s: Statements): boolean {
  try {
    s.begin.run();
    return true;
  } catch (error) {
    if (isBusy(error)) return false;
    throw error;
  }
}

function readVersion(s: Statements): string {
  return (s.getMeta.get("version") as string | undefined) ?? SCHEMA_VERSION;
}

/** True when semantic version `a` is newer than `b` (a stored version is never downgraded). */
function newer(a: string, b: string): boolean {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) > (pb[i] ?? 0);
  return false;
}

function newerSchemaError(version: number): StorageUnavailableError {
  return new StorageUnavailableError(
    `sqlite: the database has schema version ${version}, newer than this driver's ${DB_SCHEMA_VERSION}: upgrade @taskstore/driver-sqlite`,
  );
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CorruptDataError(`sqlite: ${what} is not valid JSON`, { cause: error });
  }
}

function syncFile(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function syncDir(path: string): void {
  try {
    syncFile(path);
  } catch {
    // Some platforms cannot fsync a folder; the rename is still atomic.
  }
}

const memoryLocks = new WeakMap<Database.Database, Database.Database>();

/** A caller's in-memory database is visible to this process only: its lock lives in memory too. */
function memoryLockDb(database: Database.Database): Database.Database {
  let db = memoryLocks.get(database);
  if (!db) {
    db = new Database(":memory:");
    memoryLocks.set(database, db);
  }
  return db;
}
