import type { PoolClient } from "pg";
import { errors } from "./postgres-errors.js";

/**
 * The store's tables, as ordered migrations. Each runs once per schema, in one transaction with
 * the row that records it, under the schema's migration lock (so two processes starting together
 * migrate once). Never edit a released migration: add the next one.
 */
export const MIGRATIONS: readonly { version: number; name: string; up: (schema: string) => string }[] = [
  {
    version: 1,
    name: "tasks, logs and meta",
    up: (s) => `
      CREATE TABLE ${s}.tasks (
        id text PRIMARY KEY,
        pos bigserial NOT NULL,
        parent_id text,
        status text NOT NULL,
        body jsonb NOT NULL,
        raw json
      );
      CREATE INDEX tasks_pos_idx ON ${s}.tasks (pos);
      CREATE INDEX tasks_parent_idx ON ${s}.tasks (parent_id);
      CREATE INDEX tasks_status_idx ON ${s}.tasks (status);
      CREATE TABLE ${s}.logs (
        seq bigserial PRIMARY KEY,
        task_id text NOT NULL,
        entry json NOT NULL
      );
      CREATE INDEX logs_task_idx ON ${s}.logs (task_id, seq);
      CREATE TABLE ${s}.meta (
        key text PRIMARY KEY,
        value json NOT NULL
      );`,
  },
  {
    version: 2,
    name: "txlog (ids of committed transactions, to confirm a commit whose reply was lost)",
    up: (s) => `
      CREATE TABLE ${s}.txlog (
        id uuid PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX txlog_at_idx ON ${s}.txlog (at);`,
  },
];

/** The newest migration this driver knows. */
export const DB_SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Brings `schema` (quoted) up to `DB_SCHEMA_VERSION`. The caller runs it inside a transaction that
 * holds the migration lock. Throws `VERSION_UNSUPPORTED` when the tables were made by a newer driver.
 */
export async function migrate(client: PoolClient, schema: string): Promise<void> {
  await client.query(
    `CREATE SCHEMA IF NOT EXISTS ${schema};
     CREATE TABLE IF NOT EXISTS ${schema}.migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
  );
  const { rows } = await client.query<{ version: number }>(`SELECT coalesce(max(version), 0) AS version FROM ${schema}.migrations`);
  const current = rows[0]?.version ?? 0;
  if (current > DB_SCHEMA_VERSION) {
    // VERSION_UNSUPPORTED, not an outage: no retry helps, upgrading the driver does.
    throw errors.newerSchema(
      current,
      DB_SCHEMA_VERSION,
      `the tables in ${schema} are at migration ${current}, newer than this driver's ${DB_SCHEMA_VERSION}: upgrade @taskstore/driver-postgres`,
    );
  }
  for (const migration of MIGRATIONS) {
    if (migration.version <= current) continue;
    await client.query(migration.up(schema));
    await client.query(`INSERT INTO ${schema}.migrations (version, name) VALUES ($1, $2)`, [migration.version, migration.name]);
  }
}
