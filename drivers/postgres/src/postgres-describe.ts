import type { DriverDescription } from "@taskstore/core";
import type { PoolClient } from "pg";
import { HOLDER_PREFIX } from "./postgres-lock.js";
import { STORE_LOCK_CLASS, type StoreNames } from "./postgres-names.js";

/** `describe()`'s facts: the server and database, the schema's size, the last backup, who holds the lock. */
export async function describeStore(client: PoolClient, names: StoreNames): Promise<Omit<DriverDescription, "driver">> {
  const { rows } = await client.query(
    `SELECT current_database() AS db, coalesce(host(inet_server_addr()), 'local socket') AS host, inet_server_port() AS port,
            (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::float8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind = 'r') AS size,
            (SELECT value::text FROM ${names.s}.meta WHERE key = 'lastBackupAt') AS backup_at`,
    [names.schema],
  );
  const holders = await client.query(
    `SELECT l.pid, a.application_name, host(a.client_addr) AS client FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2 AND l.granted`,
    [STORE_LOCK_CLASS, names.lockId],
  );
  const row = rows[0];
  return {
    location: `postgres://${row.host}:${row.port ?? ""}/${row.db} schema ${names.schema}`,
    sizeBytes: Number(row.size),
    ...(row.backup_at ? { lastBackupAt: Number(row.backup_at) } : {}),
    lockHolder: holderOf(holders.rows[0]),
  };
}

/** The lock holder from pg_locks: the process that took it (from its application_name) when it is a driver's, else the server pid. */
function holderOf(
  row: { pid: number; application_name: string | null; client: string | null } | undefined,
): DriverDescription["lockHolder"] {
  if (!row) return null;
  const name = row.application_name ?? "";
  if (!name.startsWith(HOLDER_PREFIX)) return { serverPid: row.pid, ...(row.client ? { host: row.client } : {}) };
  const field = (key: string) => new RegExp(`${key}=(\\S+)`).exec(name)?.[1];
  return {
    serverPid: row.pid,
    ...(field("pid") ? { pid: Number(field("pid")) } : {}),
    ...(field("host") ? { host: field("host") } : {}),
    ...(field("since") ? { since: Number(field("since")) } : {}),
  };
}
