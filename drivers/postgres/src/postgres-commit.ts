import { randomUUID } from "node:crypto";
import { sleep } from "@taskstore/core";
import type pg from "pg";
import type { QueryResult } from "pg";
import { AmbiguousCommit, errors, isAmbiguous, isUnavailable, toDriverError } from "./postgres-errors.js";
import type { StoreNames } from "./postgres-names.js";
import { metaSql } from "./postgres-statements.js";
import { StaleVersion, Transaction } from "./postgres-transaction.js";

/** Every this many commits of an instance, txlog rows older than TXLOG_KEEP are deleted. */
const TXLOG_PRUNE_EVERY = 100;
const TXLOG_KEEP = "10 minutes";

/** Runs `work` on a connection: the lock holder's while this instance holds the lock, else a pooled one. */
export type WithClient = <T>(doing: string, work: (client: pg.PoolClient) => Promise<T>) => Promise<T>;

/** What a write records besides its statements: `lastUpdated` and a NOTIFY, or (a backup) neither. */
export type Changes = { lastUpdated?: number } | false;

/**
 * The write transactions of one driver instance (see `Transaction`): `work` reads through the
 * transaction and returns its statements; they go out with the store's `lastUpdated`, the NOTIFY
 * (delivered at COMMIT, and only then; its payload lets this instance ignore its own), the
 * transaction's id into `txlog`, and COMMIT. A commit whose reply was lost is settled through
 * `txlog` (`confirm`): done when it landed, run again (under a new id) when it did not.
 */
export class PostgresCommits {
  private commits = 0;
  /** The stored schema version as last seen under the lock; `Transaction` checks it before relying on it. */
  private knownVersion: string | undefined;
  /** `BEGIN; SET LOCAL lock_timeout ...; SELECT pg_advisory_xact_lock(...)`. */
  private readonly beginSql: string;

  constructor(
    private readonly pool: pg.Pool,
    private readonly names: StoreNames,
    /** This instance's id, the NOTIFY payload. */
    private readonly self: string,
    lockTimeoutMs: number,
    private readonly confirmTimeoutMs: number,
    private readonly withClient: WithClient,
  ) {
    this.beginSql = `BEGIN; SET LOCAL lock_timeout = ${Math.max(1, Math.round(lockTimeoutMs))}; SELECT pg_advisory_xact_lock(${names.storeLock})`;
  }

  /** Forgets the stored version (after a restore replaced the store). */
  forgetVersion(): void {
    this.knownVersion = undefined;
  }

  /**
   * Runs one write transaction to its end: committed once, or failed with nothing written (or its
   * outcome unknown). `commitId` is core's id for the batch (the same on each retry of it): a
   * commit whose outcome stayed unknown is remembered under it, and the retry settles that commit
   * first, so a batch that landed is never applied again.
   */
  async run(doing: string, work: (tx: Transaction) => Promise<string[]>, changes: Changes = {}, commitId?: string): Promise<void> {
    const earlier = commitId === undefined ? undefined : this.unsettled.get(commitId);
    if (earlier !== undefined && commitId !== undefined) {
      // One try: while the server stays away this fails at once, as any write would.
      if (await this.confirm(earlier, doing, undefined, 0)) {
        this.unsettled.delete(commitId);
        return; // it landed before; only its reply was lost
      }
      this.unsettled.delete(commitId); // fenced now: it never lands, run the batch again
    }
    for (;;) {
      const txId = randomUUID();
      try {
        await this.withClient(doing, (client) => this.attempt(client, txId, work, changes));
        return;
      } catch (error) {
        if (!(error instanceof AmbiguousCommit)) throw error;
        try {
          if (await this.confirm(txId, doing, error.error)) return;
        } catch (unknown) {
          if (commitId !== undefined) this.unsettled.set(commitId, txId);
          throw unknown;
        }
      }
    }
  }

  /** Commits whose outcome stayed unknown, by core's commit id (see `run`). Bounded: old ones go. */
  private readonly unsettled = new BoundedMap<string, string>(64);

  private async attempt(
    client: pg.PoolClient,
    txId: string,
    work: (tx: Transaction) => Promise<string[]>,
    changes: Changes,
  ): Promise<void> {
    const { s } = this.names;
    for (;;) {
      const tx = new Transaction(client, s, this.beginSql, this.names.statement("get"), this.knownVersion);
      let sent = false;
      try {
        const statements = await work(tx);
        if (changes !== false) {
          statements.push(...metaSql(s, { lastUpdated: changes.lastUpdated ?? Date.now() }));
          statements.push(`SELECT pg_notify('${this.names.channel}', '${this.self}')`);
        }
        // No ON CONFLICT: a commit arriving after `confirm` fenced its id fails as a whole.
        statements.push(`INSERT INTO ${s}.txlog (id) VALUES ('${txId}')`);
        if (++this.commits % TXLOG_PRUNE_EVERY === 0) {
          statements.push(`DELETE FROM ${s}.txlog WHERE at < now() - interval '${TXLOG_KEEP}'`);
        }
        sent = true;
        await tx.commit(statements);
        // What the store holds now, unless this transaction changed it (then it is re-read next time).
        this.knownVersion = statements.some((statement) => statement.includes("'version'")) ? undefined : tx.versionRead;
        return;
      } catch (error) {
        await tx.rollback();
        this.knownVersion = undefined;
        // Another instance changed the stored version: `work` runs again on the real one.
        if (error instanceof StaleVersion) continue;
        if (sent && isAmbiguous(error)) throw new AmbiguousCommit(error);
        throw error;
      }
    }
  }

  /**
   * Whether the transaction `txId`, whose COMMIT was sent but whose reply was lost, committed.
   * On a fresh connection, inserts `txId` into `txlog` itself: a conflict means the commit's row is
   * there (it landed); an insert means it did not, and the row now fences it (a commit still on
   * its way fails on the primary key). An uncommitted row of the lost transaction makes the insert
   * wait until that transaction ends. Asks until the server answers, up to `confirmTimeoutMs`.
   */
  private async confirm(txId: string, doing: string, cause: unknown, patienceMs = this.confirmTimeoutMs): Promise<boolean> {
    const deadline = Date.now() + patienceMs;
    let last = cause;
    for (;;) {
      const left = Math.max(1, deadline - Date.now());
      let client: pg.PoolClient | undefined;
      try {
        client = await this.pool.connect();
        const results = (await client.query(
          `BEGIN; SET LOCAL lock_timeout = ${Math.round(left)};
           INSERT INTO ${this.names.s}.txlog (id) VALUES ('${txId}') ON CONFLICT (id) DO NOTHING RETURNING id; COMMIT`,
        )) as unknown as QueryResult[];
        client.release();
        return results[2]?.rowCount === 0;
      } catch (error) {
        client?.release(true);
        // A lock wait past the deadline: still unknown.
        if (!isUnavailable(error) && (error as { code?: unknown }).code !== "55P03") throw toDriverError(error, doing);
        last = error;
      }
      if (Date.now() >= deadline) {
        const detail = last instanceof Error ? last.message : String(last);
        throw errors.unavailable(
          `${doing}: the reply to a commit was lost and the server did not answer within ${patienceMs} ms whether it landed (${detail})`,
          last,
        );
      }
      await sleep(Math.min(100, deadline - Date.now()));
    }
  }
}

/** A Map that forgets its oldest entries past `limit`. */
class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly limit: number) {
    super();
  }
  override set(key: K, value: V): this {
    super.set(key, value);
    if (this.size > this.limit) this.delete(this.keys().next().value as K);
    return this;
  }
}
