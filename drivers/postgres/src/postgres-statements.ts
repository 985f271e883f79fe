import { joinStore, type LogWrite, type StorageData, type StoredTask, type TaskBody } from "@taskstore/core";
import { escapeLiteral as lit, type QueryResult } from "pg";
import { errors } from "./postgres-errors.js";

/*
 * The SQL a write set becomes. Values go in as literals (`pg.escapeLiteral`), since the writes of
 * a transaction go out as one multi-statement query, which cannot take parameters; ids have
 * passed core's validation and the rest is JSON text. `s` is the quoted schema.
 */

/** A JSON escape jsonb refuses: NUL, or a surrogate (JSON.stringify escapes only lone ones). */
const NOT_JSONB = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f])/i;

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

/**
 * The whole store in one round trip and one snapshot: meta, then every task with its log as a
 * JSON array (`raw`, when set, is the body kept verbatim). Results 1 and 2 are the rows.
 */
export function readStoreSql(s: string): string {
  return `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
    SELECT key, value FROM ${s}.meta;
    SELECT coalesce(t.raw, t.body::json) AS body,
           coalesce((SELECT json_agg(l.entry ORDER BY l.seq) FROM ${s}.logs l WHERE l.task_id = t.id), '[]'::json) AS logs
      FROM ${s}.tasks t ORDER BY t.pos;
    COMMIT`;
}

/** The store from `readStoreSql`'s results. */
export function decodeStore(results: QueryResult[], s: string): StorageData {
  const meta = new Map<string, unknown>((results[1]?.rows ?? []).map((row) => [row.key, row.value]));
  const tasks = (results[2]?.rows ?? []).map((row) => {
    if (typeof row.body !== "object" || row.body === null || Array.isArray(row.body))
      throw errors.corrupt(`a row of ${s}.tasks is not a JSON object`);
    return { ...row.body, logs: row.logs } as StoredTask;
  });
  const version = meta.get("version");
  const lastUpdated = meta.get("lastUpdated");
  return joinStore(
    {
      version: typeof version === "string" ? version : undefined,
      lastUpdated: typeof lastUpdated === "number" ? lastUpdated : undefined,
      extra: asObject(meta.get("extra")),
      metadataExtra: asObject(meta.get("extraMeta")),
    },
    tasks,
  );
}

function asObject(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/** Copies the store into the backup schema `b` (both quoted), replacing the previous backup. */
export function backupSql(s: string, b: string, at: number): string[] {
  return [
    `DROP SCHEMA IF EXISTS ${b} CASCADE`,
    `CREATE SCHEMA ${b}`,
    `CREATE TABLE ${b}.tasks AS SELECT * FROM ${s}.tasks`,
    `CREATE TABLE ${b}.logs AS SELECT * FROM ${s}.logs`,
    `CREATE TABLE ${b}.meta AS SELECT * FROM ${s}.meta WHERE key <> 'lastBackupAt'`,
    `INSERT INTO ${b}.meta VALUES ('lastBackupAt', '${at}')`,
    ...metaSql(s, { lastBackupAt: at }),
  ];
}

/** Copies the backup schema `b` into the freshly migrated schema `s`, sequences included. */
export function restoreSql(s: string, b: string): string[] {
  return [
    `INSERT INTO ${s}.tasks (id, pos, parent_id, status, body, raw) SELECT id, pos, parent_id, status, body, raw FROM ${b}.tasks ORDER BY pos`,
    `INSERT INTO ${s}.logs (seq, task_id, entry) SELECT seq, task_id, entry FROM ${b}.logs ORDER BY seq`,
    `INSERT INTO ${s}.meta (key, value) SELECT key, value FROM ${b}.meta`,
    `SELECT setval(pg_get_serial_sequence('${s}.tasks', 'pos'), (SELECT coalesce(max(pos), 0) + 1 FROM ${s}.tasks), false)`,
    `SELECT setval(pg_get_serial_sequence('${s}.logs', 'seq'), (SELECT coalesce(max(seq), 0) + 1 FROM ${s}.logs), false)`,
  ];
}
