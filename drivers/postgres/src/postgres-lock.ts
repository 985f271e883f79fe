import { hostname } from "node:os";
import { Mutex } from "@taskstore/core";
import { escapeLiteral, type Pool, type PoolClient } from "pg";
import { errors, toDriverError } from "./postgres-errors.js";

/** The application_name a lock holder's connection carries, so `describe()` can say who holds it. */
export const HOLDER_PREFIX = "taskstore-lock";

/**
 * The store lock (`acquireLock()`/`releaseLock()`) as a session-level `pg_advisory_lock` on a
 * connection of its own, held for as long as the lock is. The server releases it when that
 * connection ends, so a holder that dies (or loses its connection) never leaves the store locked.
 * While the lock is held, the driver runs its own statements on that same connection (`run()`):
 * advisory locks are re-entrant per session, so the driver's transaction-level lock on the same
 * key does not wait for itself.
 */
export class AdvisoryLock {
  private client: PoolClient | undefined;
  private onError: ((error: Error) => void) | undefined;
  private readonly queue = new Mutex();

  constructor(
    private readonly pool: Pool,
    /** `classid, objid` as SQL literals. */
    private readonly key: string,
    private readonly timeoutMs: number,
    private readonly warn: (error: Error) => void,
  ) {}

  get held(): boolean {
    return this.client !== undefined;
  }

  async acquire(): Promise<void> {
    if (this.client) return;
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw toDriverError(error, "acquireLock");
    }
    const onError = (error: Error) => this.lost(client, error);
    client.on("error", onError);
    try {
      const name = `${HOLDER_PREFIX} pid=${process.pid} host=${hostname()} since=${Date.now()}`.slice(0, 63);
      // lock_timeout bounds the wait for an advisory lock too (SQLSTATE 55P03 -> LockTimeoutError).
      await client.query(`SET lock_timeout = ${Math.max(1, Math.round(this.timeoutMs))}; SET application_name = ${escapeLiteral(name)}`);
      await client.query(`SELECT pg_advisory_lock(${this.key}); RESET lock_timeout`);
    } catch (error) {
      client.off("error", onError);
      client.release(true);
      throw toDriverError(error, "acquireLock");
    }
    this.client = client;
    this.onError = onError;
  }

  async release(): Promise<void> {
    const client = this.client;
    if (!client) return;
    // Cleared first, in this turn: no run() queued from now on gets this connection, and lost()
    // no longer owns it (it would otherwise release it a second time).
    this.client = undefined;
    if (this.onError) client.off("error", this.onError);
    // pg emits 'error' on a connection that drops mid-query: without a listener that crashes the
    // process, so one stays until the connection is back in the pool.
    const ignore = () => undefined;
    client.on("error", ignore);
    await this.queue.idle();
    let broken = false;
    try {
      await client.query(`SELECT pg_advisory_unlock(${this.key}); RESET application_name`);
    } catch {
      // The connection is gone, and with it the lock: the server released it.
      broken = true;
    }
    client.off("error", ignore);
    client.release(broken);
  }

  /** Runs `work` on the holder's connection, one at a time. */
  run<T>(work: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = this.client;
    if (!client) return Promise.reject(errors.unavailable("the lock's connection was lost"));
    return this.queue.run(() => work(client));
  }

  private lost(client: PoolClient, error: Error): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.release(true);
    this.warn(errors.unavailable("the connection holding the store's lock was lost; the server released the lock", error));
  }
}
