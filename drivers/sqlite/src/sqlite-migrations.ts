import type Database from "better-sqlite3";

/**
 * The database schema, versioned in `PRAGMA user_version`. `MIGRATIONS[i]` takes a database from
 * version i to i + 1; a new database runs them all, in order, in one transaction. Never edit a
 * shipped migration: add the next one.
 */
export const MIGRATIONS: readonly ((db: Database.Database) => void)[] = [
  // 0 -> 1: the first schema: one row per task holding the whole task (log included) as JSON.
  (db) => {
    db.exec(`
      CREATE TABLE tasks (id TEXT PRIMARY KEY, data TEXT NOT NULL);
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    `);
  },
  // 1 -> 2: logs move to their own table, so an append inserts a row instead of rewriting the
  // task; parent and status become indexed columns; `seq` keeps creation/insertion order.
  (db) => {
    db.exec(`
      CREATE TABLE tasks_v2 (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        parent_id TEXT,
        status TEXT NOT NULL,
        body TEXT NOT NULL
      );
      CREATE TABLE task_logs (
        task_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        type TEXT NOT NULL,
        source TEXT,
        output TEXT NOT NULL,
        extra TEXT,
        PRIMARY KEY (task_id, n)
      ) WITHOUT ROWID;
      INSERT INTO tasks_v2 (id, parent_id, status, body)
        SELECT id, json_extract(data, '$.parentId'), json_extract(data, '$.status'), json_remove(data, '$.logs')
        FROM tasks ORDER BY rowid;
      INSERT INTO task_logs (task_id, n, ts, type, source, output, extra)
        SELECT t.id, CAST(e.key AS INTEGER), json_extract(e.value, '$.timestamp'), json_extract(e.value, '$.type'),
               json_extract(e.value, '$.source'), json_extract(e.value, '$.output'),
               NULLIF(json_remove(e.value, '$.timestamp', '$.type', '$.source', '$.output'), '{}')
        FROM tasks AS t, json_each(t.data, '$.logs') AS e;
      DROP TABLE tasks;
      ALTER TABLE tasks_v2 RENAME TO tasks;
      CREATE INDEX tasks_parent ON tasks (parent_id);
      CREATE INDEX tasks_status ON tasks (status);
    `);
  },
];

/** The schema version this driver writes. */
export const DB_SCHEMA_VERSION = MIGRATIONS.length;

/**
 * The tables a database of each schema version has (index = `user_version`): a database whose
 * version says it is a store but lacks them belongs to another program and is refused untouched.
 */
export const SCHEMA_TABLES: readonly (readonly string[])[] = [[], ["meta", "tasks"], ["meta", "task_logs", "tasks"]];
