import { type LogWrite, SCHEMA_VERSION, type TaskBody, type TaskHead } from "@taskstore/core";
import { escapeLiteral as lit, type PoolClient, type QueryResult } from "pg";

/** A JSON escape jsonb refuses: NUL, or a surrogate (JSON.stringify escapes only lone ones). */
const NOT_JSONB = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f])/i;

/**
 * One write transaction in as few round trips as the work allows. BEGIN, the store's advisory
 * lock and the stored version go out with the first read (or with the writes, when nothing is
 * read); every write, the NOTIFY and COMMIT go out as one multi-statement query at the end. The
 * writes carry their values as literals (`pg.escapeLiteral`), since a multi-statement query
 * cannot take parameters; ids have passed core's validation and the rest is JSON text.
 */
/** The stored version was not the one `work` was told: run `work` again on the real one. */
export class StaleVersion extends Error {}

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

/** INSERT or replace task bodies (their logs and place in insertion order kept), as one statement. */
export function putTasksSql(s: string, bodies: readonly TaskBody[]): string[] {
  if (bodies.length === 0) return [];
  // One row per id (the last body wins): ON CONFLICT cannot touch one row twice in a statement.
  const byId = new Map<string, TaskBody>();
  for (const body of bodies) byId.set(body.id, body);
  const rows = [...byId.values()].map((body) => {
    const text = JSON.stringify(body);
    // jsonb refuses NUL and lone surrogates: such a body is kept verbatim in `raw` (json), with
    // only the fields the columns need in `body`.
    const exact = NOT_JSONB.test(text);
    const json = exact ? JSON.stringify({ id: body.id, status: body.status, parentId: body.parentId }) : text;
    return `(${lit(body.id)}, ${body.parentId ? lit(body.parentId) : "NULL"}, ${lit(body.status)}, ${lit(json)}::jsonb, ${exact ? `${lit(text)}::json` : "NULL"})`;
  });
  return [
    `INSERT INTO ${s}.tasks (id, parent_id, status, body, raw) VALUES ${rows.join(", ")}
     ON CONFLICT (id) DO UPDATE SET parent_id = excluded.parent_id, status = excluded.status, body = excluded.body, raw = excluded.raw`,
  ];
}

/** Appends log entries in order (JSON text kept verbatim) to tasks that exist. */
export function appendLogsSql(s: string, entries: readonly (readonly [string, string])[]): string[] {
  if (entries.length === 0) return [];
  const rows = entries.map(([id, entry], n) => `(${lit(id)}, ${lit(entry)}::json, ${n})`);
  // ORDER BY: `seq` is handed out in the order rows reach the INSERT, which a join may shuffle.
  return [
    `INSERT INTO ${s}.logs (task_id, entry) SELECT v.id, v.entry FROM (VALUES ${rows.join(", ")}) AS v(id, entry, n)
     WHERE EXISTS (SELECT 1 FROM ${s}.tasks t WHERE t.id = v.id) ORDER BY v.n`,
  ];
}

/** Replaces, appends and trims logs: at most three statements for the whole write set. */
export function logWritesSql(s: string, writes: readonly LogWrite[], known: ReadonlyMap<string, number>): string[] {
  if (writes.length === 0) return [];
  const statements: string[] = [];
  // A replaced log known to be empty (a task just created) needs no DELETE.
  const replaced = [...new Set(writes.filter((write) => write.replace && known.get(write.id) !== 0).map((write) => write.id))];
  if (replaced.length > 0) statements.push(`DELETE FROM ${s}.logs WHERE task_id IN (${replaced.map(lit).join(", ")})`);
  statements.push(
    ...appendLogsSql(
      s,
      writes.flatMap((write) => write.entries.map((entry) => [write.id, JSON.stringify(entry)] as const)),
    ),
  );
  // Trim only where the log may now be over its cap; a log whose length is unknown is checked.
  const keep = new Map<string, number>();
  const counts = new Map<string, number | undefined>();
  for (const write of writes) {
    const before = write.replace ? 0 : counts.has(write.id) ? counts.get(write.id) : known.get(write.id);
    const after = before === undefined ? undefined : before + write.entries.length;
    counts.set(write.id, after === undefined ? undefined : Math.min(after, write.keep));
    if (after === undefined || after > write.keep) keep.set(write.id, write.keep);
  }
  if (keep.size > 0) {
    const caps = [...keep].map(([id, n]) => `(${lit(id)}, ${Math.max(0, Math.floor(n))})`);
    statements.push(
      `DELETE FROM ${s}.logs l USING (
         SELECT g.seq FROM (
           SELECT g.seq, k.keep, row_number() OVER (PARTITION BY g.task_id ORDER BY g.seq DESC) AS rn
             FROM ${s}.logs g JOIN (VALUES ${caps.join(", ")}) AS k(id, keep) ON g.task_id = k.id
         ) g WHERE g.rn > g.keep
       ) d WHERE l.seq = d.seq`,
    );
  }
  return statements;
}

/** Deletes tasks with their logs. */
export function deletesSql(s: string, ids: readonly string[]): string[] {
  if (ids.length === 0) return [];
  const list = ids.map(lit).join(", ");
  return [`DELETE FROM ${s}.logs WHERE task_id IN (${list})`, `DELETE FROM ${s}.tasks WHERE id IN (${list})`];
}

/** Upserts rows of the meta table. */
export function metaSql(s: string, values: Record<string, unknown>): string[] {
  const rows = Object.entries(values).map(([key, value]) => `(${lit(key)}, ${lit(JSON.stringify(value ?? null))}::json)`);
  if (rows.length === 0) return [];
  return [`INSERT INTO ${s}.meta (key, value) VALUES ${rows.join(", ")} ON CONFLICT (key) DO UPDATE SET value = excluded.value`];
}
