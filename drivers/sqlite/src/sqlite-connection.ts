import { statSync } from "node:fs";
import { resolve } from "node:path";
import Database from "better-sqlite3";
import { retryBusy } from "./sqlite-busy.js";
import { errors, isBusy, isCorrupt, newerSchemaError } from "./sqlite-errors.js";
import { DB_SCHEMA_VERSION, MIGRATIONS, SCHEMA_TABLES } from "./sqlite-migrations.js";
import { prepare, type Statements } from "./sqlite-statements.js";
import { checkLockSchema, checkSideFiles, checkStoreSchema, inspectFile, prepareFile, tighten } from "./sqlite-store-file.js";

/** SQLite's `synchronous` levels in WAL mode; see the README for what each one survives. */
export type SynchronousLevel = "OFF" | "NORMAL" | "FULL" | "EXTRA";

export interface ConnectionSettings {
  synchronous: SynchronousLevel;
  busyTimeoutMs: number;
  lockTimeoutMs: number;
}

/**
 * The driver's connection to its database: opened only after the path is checked to be a store
 * (see `openStoreFile`), switched to WAL with the pragmas, migrated, and reopened when the file
 * was replaced underneath (a restore by another instance). A corrupt file is not an error when
 * opening: it is remembered, so that `loadData` can report it and core can restore.
 */
export class SqliteConnection {
  /** The database file (absolute), or undefined for a caller's in-memory database. */
  readonly path: string | undefined;
  /** True when the driver opened the file itself (then it may close and replace it). */
  readonly owned: boolean;
  private db: Database.Database | undefined;
  /** The file's identity when we opened it: a restore by another instance replaces the file. */
  private inode: number | undefined;
  /** Why the database could not be opened (it is corrupt): loadData reports it, restore fixes it. */
  private failure: Error | undefined;
  private statements: Statements | undefined;

  constructor(
    source: { path?: string; database?: Database.Database },
    private readonly settings: ConnectionSettings,
  ) {
    this.owned = source.database === undefined;
    if (source.database) {
      this.db = source.database;
      this.path = source.database.memory ? undefined : resolve(source.database.name);
    } else {
      this.path = resolve(source.path as string);
    }
  }

  /** The open database; only after `ready()`. */
  get database(): Database.Database {
    return this.db as Database.Database;
  }

  /** Why the database could not be opened, if it could not. */
  get openError(): Error | undefined {
    return this.failure;
  }

  /** True once opened and migrated (the file may have been replaced since). */
  get opened(): boolean {
    return this.statements !== undefined;
  }

  /** True once opened and migrated, and not replaced since. */
  get usable(): boolean {
    return this.opened && this.isCurrent();
  }

  /** The statements of an open, current, migrated connection; reopens after a restore elsewhere. */
  async ready(): Promise<Statements> {
    if (!this.statements || !this.isCurrent()) await this.open();
    if (this.failure || !this.statements) {
      throw errors.corrupt(`${this.path ?? ":memory:"} is not a usable database: ${this.failure?.message}`, this.failure);
    }
    return this.statements;
  }

  /**
   * Opens (or reopens) the connection, sets WAL and the pragmas, and migrates. A corrupt file is
   * remembered (see the class). A path that holds something other than a store of this driver is
   * refused with `NotAStoreError` before anything is changed (see `openStoreFile`).
   */
  async open(): Promise<void> {
    if (this.owned) this.close();
    this.statements = undefined;
    this.failure = undefined;
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
          db.pragma(`synchronous = ${this.settings.synchronous}`);
        },
        this.settings.lockTimeoutMs,
        "open",
      );
      await this.migrate(db);
      this.statements = prepare(db);
    } catch (error) {
      if (this.owned) this.close();
      if (!isCorrupt(error)) throw error;
      this.failure = error as Error;
    }
  }

  /** Closes a connection the driver opened; a caller's database stays open. */
  close(): void {
    this.statements = undefined;
    if (this.owned && this.db?.open) this.db.close();
    if (this.owned) this.db = undefined;
  }

  /**
   * The store lock's file, `<path>.lock`, checked before it is touched like the store itself: it
   * is never created (nor anything else changed) beside a store path that is not a store, and one
   * that exists must be a SQLite file holding only the `lock` table.
   */
  openLockFile(lockPath: string): Database.Database {
    if (this.owned) this.checkStoreBeforeLock(this.path as string);
    const state = prepareFile(lockPath, "the lock file");
    checkSideFiles(lockPath, "the lock file");
    const db = new Database(lockPath, { timeout: this.settings.busyTimeoutMs, fileMustExist: true });
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

  private async migrate(db: Database.Database): Promise<void> {
    const current = () => db.pragma("user_version", { simple: true }) as number;
    if (current() === DB_SCHEMA_VERSION) return;
    await retryBusy(() => db.exec("BEGIN IMMEDIATE"), this.settings.lockTimeoutMs, "migrate");
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
    const db = new Database(path, { timeout: this.settings.busyTimeoutMs, fileMustExist: true });
    this.db = db;
    const opened = statSync(path);
    if (opened.ino !== state.ino || opened.dev !== state.dev) {
      this.close();
      throw errors.unavailable(`${path} was replaced while it was being opened; try again`);
    }
    this.inode = opened.ino;
    // Reads only (a damaged file throws SQLITE_CORRUPT/NOTADB here: open() remembers it for restore).
    if (state.kind === "sqlite") {
      await retryBusy(() => checkStoreSchema(db, path, SCHEMA_TABLES), this.settings.lockTimeoutMs, "open");
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
    if (state.kind !== "sqlite" || this.statements || this.failure) return;
    const db = new Database(path, { timeout: this.settings.busyTimeoutMs, fileMustExist: true });
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

  private isCurrent(): boolean {
    if (!this.path) return true;
    try {
      return statSync(this.path).ino === this.inode;
    } catch {
      return false;
    }
  }
}
