import {
  joinStore,
  type LogEntry,
  newerVersion,
  SCHEMA_VERSION,
  type StorageData,
  type StoredTask,
  type StoreReader,
  splitStore,
  type TaskBody,
  type TaskHead,
  taskBody,
  type WriteSet,
} from "@taskstore/core";
import type Database from "better-sqlite3";
import { errors, isBusy } from "./sqlite-errors.js";

/*
 * The SQL of the store and the mapping between rows and tasks. Tables (see sqlite-migrations.ts):
 * `tasks` (a task without its log as JSON, parent and status as indexed columns, `seq` for
 * insertion order), `task_logs` (one row per entry, numbered 0, 1, 2... per task), `meta` (the
 * store's version, `lastUpdated` and unknown fields).
 */

const SQL = {
  begin: "BEGIN IMMEDIATE",
  commit: "COMMIT",
  rollback: "ROLLBACK",
  getTask: "SELECT body FROM tasks WHERE id = ?",
  // Two subqueries, so each is one index seek (min and max together would scan).
  logSpan: "SELECT (SELECT min(n) FROM task_logs WHERE task_id = ?) AS lo, (SELECT max(n) FROM task_logs WHERE task_id = ?) AS hi",
  putTask:
    "INSERT INTO tasks (id, parent_id, status, body) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET parent_id = excluded.parent_id, status = excluded.status, body = excluded.body",
  setBody: "UPDATE tasks SET body = ? WHERE id = ?",
  deleteTask: "DELETE FROM tasks WHERE id = ?",
  insertLog: "INSERT INTO task_logs (task_id, n, ts, type, source, output, extra) VALUES (?, ?, ?, ?, ?, ?, ?)",
  deleteLogs: "DELETE FROM task_logs WHERE task_id = ?",
  trimLogs: "DELETE FROM task_logs WHERE task_id = ? AND n <= ?",
  deleteAllTasks: "DELETE FROM tasks",
  deleteAllLogs: "DELETE FROM task_logs",
  allTasks: "SELECT id, body FROM tasks ORDER BY seq",
  allLogs: "SELECT task_id, ts, type, source, output, extra FROM task_logs ORDER BY task_id, n",
  allMeta: "SELECT key, value FROM meta",
  getMeta: "SELECT value FROM meta WHERE key = ?",
  setMeta: "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
} as const;

/** The prepared statements of one connection. */
export type Statements = { readonly [name in keyof typeof SQL]: Database.Statement };

export function prepare(db: Database.Database): Statements {
  const statements = {} as Record<keyof typeof SQL, Database.Statement>;
  for (const name of Object.keys(SQL) as (keyof typeof SQL)[]) statements[name] = db.prepare(SQL[name]);
  statements.getMeta.pluck();
  return statements;
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

/** The whole store, read in one snapshot of all three tables. */
export function readStore(db: Database.Database, s: Statements): StorageData {
  db.exec("BEGIN");
  try {
    const tasks = new Map<string, StoredTask>();
    let lastUpdated = 0;
    for (const row of s.allTasks.iterate() as IterableIterator<TaskRow>) {
      const task = errors.parseJson(row.body, `task ${row.id}`) as StoredTask;
      task.logs = [];
      tasks.set(row.id, task);
      if (task.updatedAt > lastUpdated) lastUpdated = task.updatedAt;
    }
    for (const row of s.allLogs.iterate() as IterableIterator<LogRow>) {
      tasks.get(row.task_id)?.logs.push(entryOf(row));
    }
    const meta = new Map((s.allMeta.all() as { key: string; value: string }[]).map((row) => [row.key, row.value]));
    db.exec("COMMIT");
    const extra = errors.parseJson(meta.get("extra") ?? "{}", "meta.extra") as Record<string, unknown>;
    const metadataExtra = errors.parseJson(meta.get("metadataExtra") ?? "{}", "meta.metadataExtra") as Record<string, unknown>;
    // A delete records lastUpdated; every other change moves some task's updatedAt.
    const stored = Number(meta.get("lastUpdated") ?? 0);
    return joinStore({ version: meta.get("version"), lastUpdated: Math.max(lastUpdated, stored), extra, metadataExtra }, [
      ...tasks.values(),
    ]);
  } finally {
    if (db.inTransaction) db.exec("ROLLBACK");
  }
}

/** Replaces every row with `data` (inside the caller's transaction). */
export function writeStore(s: Statements, data: StorageData): void {
  s.deleteAllLogs.run();
  s.deleteAllTasks.run();
  const { envelope, tasks } = splitStore(data);
  for (const task of tasks) {
    putBody(s, taskBody(task));
    task.logs.forEach((entry, n) => {
      insertLog(s, task.id, n, entry);
    });
  }
  s.setMeta.run("version", exact(envelope.version, ["version"]));
  s.setMeta.run("extra", JSON.stringify(envelope.extra));
  s.setMeta.run("metadataExtra", JSON.stringify(envelope.metadataExtra));
  s.setMeta.run("lastUpdated", String(envelope.lastUpdated));
}

/** Runs `work` against the rows and applies the write set it returns (inside the caller's transaction). */
export async function applyWork(s: Statements, work: (reader: StoreReader) => Promise<WriteSet>): Promise<void> {
  // What this transaction read: a put that leaves parent and status as they were rewrites only
  // the body (an UPDATE naming an indexed column rewrites its index pages, even when the value is
  // the same), and an append reuses the log span it already looked up.
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
      const head = errors.parseJson(row.body, `task ${id}`) as TaskHead;
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
  if (writes.version) {
    const stored = readVersion(s);
    const version = newerVersion(stored, writes.version);
    if (version !== stored) s.setMeta.run("version", exact(version, ["version"]));
  }
  // Every other change moves some task's updatedAt, from which readStore derives lastUpdated; a
  // delete may not, so it is recorded (one row fewer to write per append).
  if (writes.deletes.length > 0) s.setMeta.run("lastUpdated", String(Date.now()));
}

function readVersion(s: Statements): string {
  return (s.getMeta.get("version") as string | undefined) ?? SCHEMA_VERSION;
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
  if (row.extra !== null) Object.assign(entry, errors.parseJson(row.extra, "log entry"));
  return entry;
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
  throw errors.validation([
    { path, rule: "well_formed", message: `has a lone surrogate (U+${unit}) at index ${index}; strings must be well-formed Unicode` },
  ]);
}

/** BEGIN IMMEDIATE; false when the database is busy (then nothing began). */
export function tryBegin(s: Statements): boolean {
  try {
    s.begin.run();
    return true;
  } catch (error) {
    if (isBusy(error)) return false;
    throw error;
  }
}
