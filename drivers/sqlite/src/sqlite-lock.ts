import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { sleep } from "@taskstore/core";
import Database from "better-sqlite3";
import { retryBusy } from "./sqlite-busy.js";
import { errors, isBusy } from "./sqlite-errors.js";

/** Who holds the store's lock, as `describe()` shows it. */
export interface LockHolder {
  [key: string]: unknown;
  pid: number;
  host: string;
  since: number;
  expires: number;
}

interface LockRow {
  owner: string;
  pid: number;
  host: string;
  since: number;
  expires: number;
}

/**
 * The store lock (`acquireLock()`/`releaseLock()`), across processes: one row in a small SQLite
 * file beside the database (`<path>.lock`), taken in a short write transaction. The row names its
 * holder (a random owner token, pid, host, since) and an expiry the holder renews while it holds
 * the lock. A row whose holder is a dead pid on this host is taken over at once; one from another
 * host once it expired. Waiting polls asynchronously, so instances in the same process never block
 * each other's event loop. It lives in its own file so that it still works when the main database
 * is corrupt, which is exactly when core takes it to restore the backup.
 */
export class StoreLock {
  private readonly owner = randomUUID();
  private readonly host = hostname();
  private db: Database.Database | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private selectRow: Database.Statement | undefined;

  constructor(
    private readonly open: () => Database.Database,
    /** False when the connection is shared (a caller's in-memory database): then never closed here. */
    private readonly ownsConnection: boolean,
    private readonly timeoutMs: number,
    private readonly expiryMs: number,
    private readonly onLost: (error: Error) => void,
  ) {}

  get held(): boolean {
    return this.heartbeat !== undefined;
  }

  async acquire(): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    let delay = 5;
    let last: LockRow | undefined;
    for (;;) {
      const taken = this.tryTake();
      if (taken === true) break;
      if (taken) last = taken;
      if (Date.now() >= deadline) {
        const by = last ? ` (held by pid ${last.pid} on ${last.host} since ${new Date(last.since).toISOString()})` : "";
        throw errors.lockTimeout(`the store lock was not released within ${this.timeoutMs} ms${by}`);
      }
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 100);
    }
    const every = Math.max(10, Math.floor(this.expiryMs / 3));
    this.heartbeat = setInterval(() => this.renew(), every);
    this.heartbeat.unref();
  }

  async release(): Promise<void> {
    if (!this.heartbeat) return;
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    const remove = this.connection().prepare("DELETE FROM lock WHERE owner = ?");
    await retryBusy(() => remove.run(this.owner), this.timeoutMs, "release the lock");
  }

  /** The current holder, if the lock is held by anyone alive. */
  async holder(): Promise<LockHolder | null> {
    const select = this.connection().prepare("SELECT owner, pid, host, since, expires FROM lock WHERE id = 1");
    const row = (await retryBusy(() => select.get(), this.timeoutMs, "read the lock")) as LockRow | undefined;
    if (!row || this.isStale(row)) return null;
    return { pid: row.pid, host: row.host, since: row.since, expires: row.expires };
  }

  /**
   * The holder when another live instance holds the lock, undefined when nobody (or this instance)
   * does. One read of the lock row, no write. Throws SQLITE_BUSY while the row is being written.
   */
  otherHolder(): LockHolder | undefined {
    if (this.held) return undefined;
    this.connection();
    const row = this.selectRow?.get() as LockRow | undefined;
    if (!row || row.owner === this.owner || this.isStale(row)) return undefined;
    return { pid: row.pid, host: row.host, since: row.since, expires: row.expires };
  }

  async close(): Promise<void> {
    try {
      await this.release();
    } finally {
      if (this.ownsConnection) this.db?.close();
      this.db = undefined;
      this.selectRow = undefined;
    }
  }

  /** True when taken; otherwise the row of the live holder (or undefined when the file was busy). */
  private tryTake(): true | LockRow | undefined {
    const db = this.connection();
    try {
      db.exec("BEGIN IMMEDIATE");
    } catch (error) {
      if (isBusy(error)) return undefined;
      throw error;
    }
    try {
      const row = db.prepare("SELECT owner, pid, host, since, expires FROM lock WHERE id = 1").get() as LockRow | undefined;
      if (row && !this.isStale(row)) {
        db.exec("COMMIT");
        return row;
      }
      const now = Date.now();
      db.prepare("INSERT OR REPLACE INTO lock (id, owner, pid, host, since, expires) VALUES (1, ?, ?, ?, ?, ?)").run(
        this.owner,
        process.pid,
        this.host,
        now,
        now + this.expiryMs,
      );
      db.exec("COMMIT");
      return true;
    } catch (error) {
      if (db.inTransaction) db.exec("ROLLBACK");
      if (isBusy(error)) return undefined;
      throw error;
    }
  }

  private isStale(row: LockRow): boolean {
    if (row.expires < Date.now()) return true;
    return row.host === this.host && !pidAlive(row.pid);
  }

  private renew(): void {
    try {
      const { changes } = this.connection()
        .prepare("UPDATE lock SET expires = ? WHERE owner = ?")
        .run(Date.now() + this.expiryMs, this.owner);
      if (changes === 0) {
        clearInterval(this.heartbeat);
        this.heartbeat = undefined;
        this.onLost(errors.lockTimeout("the store lock was taken over by another holder while this instance held it"));
      }
    } catch (error) {
      // Busy now: the next beat tries again, well before the lock expires.
      if (!isBusy(error)) this.onLost(error as Error);
    }
  }

  private connection(): Database.Database {
    if (!this.db) {
      this.db = this.open();
      if (this.ownsConnection) {
        // WAL: the row is read at every write of every instance, and a WAL reader of an unchanged
        // file takes no file locks (about 3 us instead of 12). Best effort: another process
        // switching it at the same moment is fine, and either mode is correct.
        try {
          this.db.pragma("journal_mode = WAL");
        } catch (error) {
          if (!isBusy(error)) throw error;
        }
      }
      this.db.exec(
        "CREATE TABLE IF NOT EXISTS lock (id INTEGER PRIMARY KEY CHECK (id = 1), owner TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL, since INTEGER NOT NULL, expires INTEGER NOT NULL)",
      );
      this.selectRow = this.db.prepare("SELECT owner, pid, host, since, expires FROM lock WHERE id = 1");
    }
    return this.db;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

const memoryLocks = new WeakMap<Database.Database, Database.Database>();

/** A caller's in-memory database is visible to this process only: its lock lives in memory too. */
export function memoryLockDb(database: Database.Database): Database.Database {
  let db = memoryLocks.get(database);
  if (!db) {
    db = new Database(":memory:");
    memoryLocks.set(database, db);
  }
  return db;
}
