import { randomUUID } from "node:crypto";
import {
  DRIVER_SPECIFICATION_VERSION,
  type DriverCapabilities,
  type DriverContext,
  type DriverDescription,
  type RestoreResult,
  SCHEMA_VERSION,
  type StorageData,
  type StorageDriver,
  StorageUnavailableError,
  type StoredTask,
  type StoreReader,
  ValidationError,
  type WriteSet,
} from "@taskstore/core";
import pg, { type QueryResult } from "pg";
import { AmbiguousCommit, corrupt, isAmbiguous, isUnavailable, toDriverError } from "./errors.js";
import { AdvisoryLock, HOLDER_PREFIX } from "./lock.js";
import { migrate } from "./migrations.js";
import { Notifier } from "./notifier.js";
import { appendLogsSql, deletesSql, logWritesSql, metaSql, putTasksSql, StaleVersion, Transaction } from "./transaction.js";

export interface PostgresStorageDriverOptions {
  /** `postgres://user:password@host:port/database`. Without it (and without `pool`), node-postgres reads the PG* environment variables. */
  connectionString?: string;
  /** Your own `pg.Pool`: used as it is and never ended by the driver. Wins over `connectionString`. */
  pool?: pg.Pool;
  /**
   * The PostgreSQL schema that holds this store's tables, so several stores share a database.
   * Lowercase letters, digits and `_`, starting with a letter or `_`, at most 40 characters, no
   * `__` (the driver names its backup and moved-aside schemas with it). Default `"taskstore"`.
   */
  schema?: string;
  /** How long `acquireLock()` and each change set wait for the store's lock. Default 30,000 ms. */
  lockTimeoutMs?: number;
  /** How long to wait for a connection (a pool the driver makes): past it, operations fail with STORAGE_UNAVAILABLE. Default 5,000 ms. */
  connectTimeoutMs?: number;
  /** Connections in the pool the driver makes. Default 10 (two are held while locked and watching). */
  poolSize?: number;
  /**
   * When a commit was sent and the connection failed before its reply came, how long to wait for
   * the server to answer whether it landed (see README "Outages and durability"). Past it the
   * change set fails with STORAGE_UNAVAILABLE, its outcome unknown. Default 5,000 ms.
   */
  confirmTimeoutMs?: number;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,39}$/;
/** `classid` of the advisory locks: "tsks" for the store's write lock, "tskm" for migrations. */
const STORE_LOCK_CLASS = 0x74736b73;
const MIGRATION_LOCK_CLASS = 0x74736b6d;
/** Every this many commits of an instance, txlog rows older than TXLOG_KEEP are deleted. */
const TXLOG_PRUNE_EVERY = 100;
const TXLOG_KEEP = "10 minutes";

/**
 * A taskstore driver for PostgreSQL. One schema per store: `tasks` (a JSONB body, indexed parent
 * and status columns, insertion order in `pos`), `logs` (one row per entry, ordered by `seq`) and
 * `meta` (schema version, unknown top-level fields). Every change set is one transaction that
 * first takes the store's transaction-level advisory lock, so concurrent writers from any number
 * of processes are applied one after another on current data, and then NOTIFYs the store's
 * channel so other instances refresh.
 */
export class PostgresStorageDriver implements StorageDriver {
  readonly name = "postgres";
  /** The contract this driver was written against. */
  readonly specificationVersion = DRIVER_SPECIFICATION_VERSION;
  readonly capabilities: Partial<DriverCapabilities> = {
    locking: true,
    incremental: true,
    backup: true,
    restore: true,
    persistent: true,
    changeNotification: true,
  };

  private readonly pool: pg.Pool;
  private readonly ownsPool: boolean;
  private readonly schemaName: string;
  private readonly s: string;
  private readonly backupSchema: string;
  private readonly channel: string;
  private readonly storeKey: string;
  private readonly migrationKey: string;
  private readonly beginSql: string;
  private readonly lockTimeoutMs: number;
  private readonly confirmTimeoutMs: number;
  private commits = 0;
  private readonly self = randomUUID();
  private readonly lock: AdvisoryLock;
  private readonly listeners = new Set<() => void>();
  private notifier: Notifier | undefined;
  private context: DriverContext | undefined;
  private closed = false;
  /** The stored schema version as last seen under the lock; `Transaction` checks it before relying on it. */
  private knownVersion: string | undefined;
  private readonly onPoolError = (error: Error) => this.warn(toDriverError(error, "idle connection") as Error);

  constructor(options: PostgresStorageDriverOptions = {}) {
    const schema = options.schema ?? "taskstore";
    if (!SCHEMA_NAME.test(schema) || schema.includes("__")) {
      throw new ValidationError([
        { path: ["schema"], rule: "identifier", message: "must be 1-40 of a-z, 0-9, '_', not starting with a digit, without '__'" },
      ]);
    }
    this.schemaName = schema;
    this.s = `"${schema}"`;
    this.backupSchema = `"${schema}__backup"`;
    this.channel = `taskstore:${schema}`;
    const objid = hash(schema);
    this.storeKey = `${STORE_LOCK_CLASS}, ${objid}`;
    this.migrationKey = `${MIGRATION_LOCK_CLASS}, ${objid}`;
    this.lockTimeoutMs = options.lockTimeoutMs ?? 30_000;
    this.confirmTimeoutMs = options.confirmTimeoutMs ?? 5_000;
    this.beginSql = `BEGIN; SET LOCAL lock_timeout = ${Math.max(1, Math.round(this.lockTimeoutMs))}; SELECT pg_advisory_xact_lock(${this.storeKey})`;
    this.ownsPool = !options.pool;
    this.pool =
      options.pool ??
      new pg.Pool({
        ...(options.connectionString ? { connectionString: options.connectionString } : {}),
        connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
        max: options.poolSize ?? 10,
        application_name: "taskstore",
        keepAlive: true,
      });
    // An idle connection the server closed (a restart) is reported, never an uncaught 'error'.
    this.pool.on("error", this.onPoolError);
    this.lock = new AdvisoryLock(this.pool, this.storeKey, this.lockTimeoutMs, (error) => this.warn(error));
  }

  attach(context: DriverContext): void {
    this.context = context;
  }

  /** Creates the schema and runs pending migrations, under the schema's migration lock. */
  async initialize(): Promise<void> {
    await this.withClient("initialize", async (client) => {
      await this.inTransaction(client, async () => {
        await client.query(`SELECT pg_advisory_xact_lock(${this.migrationKey})`);
        await migrate(client, this.s);
      });
    });
  }

  async loadData(): Promise<StorageData> {
    return this.withClient("loadData", async (client) => {
      // One snapshot for meta, tasks and logs. On an error mid-way the connection goes back to
      // the pool only after ROLLBACK, never inside an aborted transaction.
      let results: pg.QueryResult[];
      try {
        results = (await client.query(
          `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
         SELECT key, value FROM ${this.s}.meta;
         SELECT coalesce(t.raw, t.body::json) AS body,
                coalesce((SELECT json_agg(l.entry ORDER BY l.seq) FROM ${this.s}.logs l WHERE l.task_id = t.id), '[]'::json) AS logs
           FROM ${this.s}.tasks t ORDER BY t.pos;
         COMMIT`,
        )) as unknown as pg.QueryResult[];
      } catch (error) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw error;
      }
      const meta = new Map<string, unknown>((results[1]?.rows ?? []).map((row) => [row.key, row.value]));
      const tasks = (results[2]?.rows ?? []).map((row) => {
        if (typeof row.body !== "object" || row.body === null || Array.isArray(row.body))
          throw corrupt(`a row of ${this.s}.tasks is not a JSON object`);
        return { ...row.body, logs: row.logs } as StoredTask;
      });
      return {
        ...(asObject(meta.get("extra")) ?? {}),
        version: typeof meta.get("version") === "string" ? (meta.get("version") as string) : SCHEMA_VERSION,
        tasks,
        metadata: {
          ...(asObject(meta.get("extraMeta")) ?? {}),
          lastUpdated: typeof meta.get("lastUpdated") === "number" ? (meta.get("lastUpdated") as number) : 0,
          totalTasks: tasks.length,
        },
      };
    });
  }

  /** Replaces the whole store in one transaction. */
  async saveData(data: StorageData): Promise<void> {
    const { version, tasks, metadata, ...extra } = data;
    const { lastUpdated, totalTasks: _count, ...extraMeta } = metadata;
    await this.write(
      "saveData",
      async () => [
        `DELETE FROM ${this.s}.logs`,
        `DELETE FROM ${this.s}.tasks`,
        ...putTasksSql(
          this.s,
          tasks.map(({ logs: _logs, ...body }) => body),
        ),
        ...appendLogsSql(
          this.s,
          tasks.flatMap((task) => task.logs.map((entry) => [task.id, JSON.stringify(entry)] as const)),
        ),
        ...metaSql(this.s, { version, extra, extraMeta }),
      ],
      lastUpdated,
    );
  }

  /**
   * One change set, one transaction: the store's advisory lock first (so every reader.get sees
   * the latest committed state and no other writer can slip in between read and write), then
   * `work`, then its writes. A `work` that throws rolls everything back.
   */
  async transact(work: (reader: StoreReader) => Promise<WriteSet>): Promise<void> {
    await this.write("transact", async (tx) => {
      const writes = await work({ get: (id) => tx.get(id), version: () => tx.version() });
      return [
        ...putTasksSql(this.s, writes.puts),
        ...logWritesSql(this.s, writes.logs, tx.logCounts),
        ...deletesSql(this.s, writes.deletes),
        ...(writes.version ? metaSql(this.s, { version: writes.version }) : []),
      ];
    });
  }

  /**
   * Copies the store into the schema `<schema>__backup` (replacing the previous backup), in one
   * transaction under the store's lock, so the copy is one consistent state.
   */
  async backup(): Promise<void> {
    const b = this.backupSchema;
    const at = Date.now();
    await this.write(
      "backup",
      async () => [
        `DROP SCHEMA IF EXISTS ${b} CASCADE`,
        `CREATE SCHEMA ${b}`,
        `CREATE TABLE ${b}.tasks AS SELECT * FROM ${this.s}.tasks`,
        `CREATE TABLE ${b}.logs AS SELECT * FROM ${this.s}.logs`,
        `CREATE TABLE ${b}.meta AS SELECT * FROM ${this.s}.meta WHERE key <> 'lastBackupAt'`,
        `INSERT INTO ${b}.meta VALUES ('lastBackupAt', '${at}')`,
        ...metaSql(this.s, { lastBackupAt: at }),
      ],
      false,
    );
  }

  /**
   * Renames the current schema to `<schema>__aside_<epoch ms>` (never dropped), makes a fresh one
   * through the migrations and copies the backup into it. One transaction: all of it or nothing.
   */
  async restore(): Promise<RestoreResult> {
    const b = this.backupSchema;
    const aside = `${this.schemaName}__aside_${Date.now()}`;
    await this.write("restore", async (tx) => {
      await tx.begin();
      const { client } = tx;
      const { rows } = await client.query(
        "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AND to_regclass($3) IS NOT NULL AS ok",
        [`${b}.tasks`, `${b}.logs`, `${b}.meta`],
      );
      if (!rows[0]?.ok) throw corrupt(`the store ${this.s} has no backup (schema ${b}) to restore`);
      await client.query(`SELECT pg_advisory_xact_lock(${this.migrationKey}); ALTER SCHEMA ${this.s} RENAME TO "${aside}"`);
      await migrate(client, this.s);
      return [
        `INSERT INTO ${this.s}.tasks (id, pos, parent_id, status, body, raw) SELECT id, pos, parent_id, status, body, raw FROM ${b}.tasks ORDER BY pos`,
        `INSERT INTO ${this.s}.logs (seq, task_id, entry) SELECT seq, task_id, entry FROM ${b}.logs ORDER BY seq`,
        `INSERT INTO ${this.s}.meta (key, value) SELECT key, value FROM ${b}.meta`,
        `SELECT setval(pg_get_serial_sequence('${this.s}.tasks', 'pos'), (SELECT coalesce(max(pos), 0) + 1 FROM ${this.s}.tasks), false)`,
        `SELECT setval(pg_get_serial_sequence('${this.s}.logs', 'seq'), (SELECT coalesce(max(seq), 0) + 1 FROM ${this.s}.logs), false)`,
      ];
    });
    this.knownVersion = undefined;
    return { movedTo: `postgres schema ${aside}`, restoredFrom: `postgres schema ${this.schemaName}__backup` };
  }

  async acquireLock(): Promise<void> {
    await this.lock.acquire();
  }

  async releaseLock(): Promise<void> {
    await this.lock.release();
  }

  /** LISTENs (on a connection of its own) for commits of other instances on this store. */
  watch(listener: () => void): () => void {
    this.listeners.add(listener);
    if (!this.notifier) {
      this.notifier = new Notifier(
        this.pool,
        `"${this.channel}"`,
        this.self,
        () => {
          for (const each of this.listeners) each();
        },
        (error) => this.warn(error),
      );
      this.notifier.start();
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        void this.notifier?.stop();
        this.notifier = undefined;
      }
    };
  }

  async describe(): Promise<DriverDescription> {
    return this.withClient("describe", async (client) => {
      const { rows } = await client.query(
        `SELECT current_database() AS db, coalesce(host(inet_server_addr()), 'local socket') AS host, inet_server_port() AS port,
                (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::float8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relkind = 'r') AS size,
                (SELECT value::text FROM ${this.s}.meta WHERE key = 'lastBackupAt') AS backup_at`,
        [this.schemaName],
      );
      const holders = await client.query(
        `SELECT l.pid, a.application_name, host(a.client_addr) AS client FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2 AND l.granted`,
        [STORE_LOCK_CLASS, hash(this.schemaName)],
      );
      const row = rows[0];
      return {
        driver: this.name,
        location: `postgres://${row.host}:${row.port ?? ""}/${row.db} schema ${this.schemaName}`,
        sizeBytes: Number(row.size),
        ...(row.backup_at ? { lastBackupAt: Number(row.backup_at) } : {}),
        lockHolder: holderOf(holders.rows[0]),
      };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.notifier?.stop();
    this.notifier = undefined;
    this.listeners.clear();
    await this.lock.release();
    if (this.ownsPool) await this.pool.end();
    else this.pool.off("error", this.onPoolError);
  }

  // -------------------------------------------------------------------------------------------

  /**
   * A write transaction (see `Transaction`): `work` reads through it and returns its statements;
   * they go out with the store's `lastUpdated`, the NOTIFY (delivered at COMMIT, and only then;
   * its payload lets this instance ignore its own), the transaction's id into `txlog`, and
   * COMMIT. `changes: false` (a backup) sends neither `lastUpdated` nor NOTIFY. `changes` may carry
   * the `lastUpdated` to record. A commit whose reply was lost is settled through `txlog`
   * (`confirm`): done when it landed, run again (under a new id) when it did not.
   */
  private async write(doing: string, work: (tx: Transaction) => Promise<string[]>, changes: boolean | number = true): Promise<void> {
    for (;;) {
      const txId = randomUUID();
      try {
        await this.withClient(doing, (client) => this.attempt(client, txId, work, changes));
        return;
      } catch (error) {
        if (!(error instanceof AmbiguousCommit)) throw error;
        if (await this.confirm(txId, doing, error.error)) return;
      }
    }
  }

  private async attempt(
    client: pg.PoolClient,
    txId: string,
    work: (tx: Transaction) => Promise<string[]>,
    changes: boolean | number,
  ): Promise<void> {
    for (;;) {
      const tx = new Transaction(client, this.s, this.beginSql, this.statement("get"), this.knownVersion);
      let sent = false;
      try {
        const statements = await work(tx);
        if (changes !== false) {
          statements.push(...metaSql(this.s, { lastUpdated: typeof changes === "number" ? changes : Date.now() }));
          statements.push(`SELECT pg_notify('${this.channel}', '${this.self}')`);
        }
        // No ON CONFLICT: a commit arriving after `confirm` fenced its id fails as a whole.
        statements.push(`INSERT INTO ${this.s}.txlog (id) VALUES ('${txId}')`);
        if (++this.commits % TXLOG_PRUNE_EVERY === 0) {
          statements.push(`DELETE FROM ${this.s}.txlog WHERE at < now() - interval '${TXLOG_KEEP}'`);
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
  private async confirm(txId: string, doing: string, cause: unknown): Promise<boolean> {
    const deadline = Date.now() + this.confirmTimeoutMs;
    let last = cause;
    for (;;) {
      const left = Math.max(1, deadline - Date.now());
      let client: pg.PoolClient | undefined;
      try {
        client = await this.pool.connect();
        const results = (await client.query(
          `BEGIN; SET LOCAL lock_timeout = ${Math.round(left)};
           INSERT INTO ${this.s}.txlog (id) VALUES ('${txId}') ON CONFLICT (id) DO NOTHING RETURNING id; COMMIT`,
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
        throw new StorageUnavailableError(
          `postgres: ${doing}: the reply to a commit was lost and the server did not answer within ${this.confirmTimeoutMs} ms whether it landed (${detail})`,
          { cause: last },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(100, deadline - Date.now())));
    }
  }

  private async inTransaction(client: pg.PoolClient, work: () => Promise<void>): Promise<void> {
    await client.query("BEGIN");
    try {
      await work();
      await client.query("COMMIT");
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw error;
    }
  }

  /** Runs `work` on a pooled connection, or on the lock holder's while this instance holds the lock. */
  private async withClient<T>(doing: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    if (this.lock.held) {
      try {
        return await this.lock.run(work);
      } catch (error) {
        throw toDriverError(error, doing);
      }
    }
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw toDriverError(error, doing);
    }
    // Between statements (while `work` runs core's code) nothing else listens for this client's errors.
    let broken: unknown;
    const onError = (error: Error) => {
      broken = error;
    };
    client.on("error", onError);
    try {
      return await work(client);
    } catch (error) {
      if (isUnavailable(error) || error instanceof AmbiguousCommit) broken ??= error;
      throw toDriverError(error, doing);
    } finally {
      client.off("error", onError);
      client.release(broken ? true : undefined);
    }
  }

  /**
   * The name of a hot statement, prepared once per connection (node-postgres caches it by name).
   * Per schema, since a caller's pool may serve several stores. A restore renames the schema;
   * PostgreSQL then re-plans the statements against the new tables.
   */
  private statement(kind: string): string {
    return `taskstore_${kind}_${hash(this.schemaName).toString(36)}`;
  }

  private warn(error: Error): void {
    this.context?.warn(error);
  }
}

/** A stable 31-bit FNV-1a hash of the schema name: the `objid` of its advisory locks. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) & 0x7fffffff;
}

function asObject(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
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
