import { SCHEMA_VERSION, type TaskHead } from "@taskstore/core";
import { escapeLiteral as lit, type PoolClient, type QueryResult } from "pg";

/** The stored version was not the one `work` was told: run `work` again on the real one. */
export class StaleVersion extends Error {}

/**
 * One write transaction in as few round trips as the work allows. BEGIN, the store's advisory
 * lock and the stored version go out with the first read (or with the writes, when nothing is
 * read); every write, the NOTIFY and COMMIT go out as one multi-statement query at the end. The
 * writes carry their values as literals (`pg.escapeLiteral`, see postgres-statements.ts), since a
 * multi-statement query cannot take parameters.
 */
export class Transaction {
  private begun = false;
  private storedVersion = SCHEMA_VERSION;
  /** The version `version()` answered from the driver's cache, checked under the lock at the first read. */
  private answered: string | undefined;
  private read = false;
  /** Log lengths of the tasks read so far (0 for a task that does not exist). */
  readonly logCounts = new Map<string, number>();

  constructor(
    readonly client: PoolClient,
    /** The quoted schema. */
    private readonly s: string,
    /** `BEGIN; SET LOCAL lock_timeout ...; SELECT pg_advisory_xact_lock(...)`. */
    private readonly beginSql: string,
    /** The name under which the single-task read is prepared on each connection. */
    private readonly getName: string,
    /** The version this driver last saw stored, if any: saves a round trip per transaction. */
    private readonly cachedVersion: string | undefined,
  ) {}

  /** The version stored, as read under the lock; undefined when this transaction did not read it. */
  get versionRead(): string | undefined {
    return this.read ? this.storedVersion : undefined;
  }

  /** Sends BEGIN and takes the lock now (for work that needs parameters after it). */
  async begin(): Promise<void> {
    if (!this.begun) await this.start("");
  }

  async version(): Promise<string> {
    if (!this.begun && this.cachedVersion !== undefined) {
      this.answered = this.cachedVersion;
      return this.cachedVersion;
    }
    await this.begin();
    return this.storedVersion;
  }

  async get(id: string): Promise<TaskHead | undefined> {
    const text = `SELECT coalesce(t.raw, t.body::json) AS body, (SELECT count(*)::int FROM ${this.s}.logs l WHERE l.task_id = t.id) AS n
                    FROM ${this.s}.tasks t WHERE t.id = `;
    const row = this.begun
      ? (await this.client.query({ name: this.getName, text: `${text}$1`, values: [id] })).rows[0]
      : (await this.start(`; ${text}${lit(id)}`))?.rows[0];
    // A task that is not there has no log either (a delete takes the log with the task).
    this.logCounts.set(id, row?.n ?? 0);
    if (!row) return undefined;
    // Assigned, not spread in: `{ ...body, logCount }` is a slow path in V8 (see core's copy.ts).
    const head = row.body as TaskHead;
    head.logCount = row.n;
    return head;
  }

  /** Runs `statements`, then COMMIT, in one round trip (with BEGIN and the lock first if nothing was read). */
  async commit(statements: string[]): Promise<void> {
    // A version answered from the cache must be checked under the lock before anything is written.
    if (!this.begun && this.answered !== undefined) await this.begin();
    const prefix = this.begun ? [] : [this.beginSql];
    this.begun = true;
    await this.client.query([...prefix, ...statements, "COMMIT"].join(";\n"));
  }

  async rollback(): Promise<void> {
    await this.client.query("ROLLBACK").catch(() => undefined);
  }

  /** BEGIN, lock, version, and `then` (a statement whose result is returned). */
  private async start(then: string): Promise<QueryResult | undefined> {
    this.begun = true;
    const results = (await this.client.query(
      `${this.beginSql}; SELECT value FROM ${this.s}.meta WHERE key = 'version'${then}`,
    )) as unknown as QueryResult[];
    const stored = results[3]?.rows[0]?.value;
    if (typeof stored === "string") this.storedVersion = stored;
    this.read = true;
    if (this.answered !== undefined && this.answered !== this.storedVersion) throw new StaleVersion();
    return results[4];
  }
}
