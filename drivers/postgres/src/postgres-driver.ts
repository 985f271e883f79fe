import { randomUUID } from "node:crypto";
import {
  DRIVER_SPECIFICATION_VERSION,
  type DriverCapabilities,
  type DriverContext,
  type DriverDescription,
  numberOption,
  type RestoreResult,
  type StorageData,
  type StorageDriver,
  type StoreReader,
  splitStore,
  type TransactOptions,
  taskBody,
  type WriteSet,
} from "@taskstore/core";
import pg from "pg";
import { PostgresCommits } from "./postgres-commit.js";
import { describeStore } from "./postgres-describe.js";
import { AmbiguousCommit, errors, isUnavailable, toDriverError } from "./postgres-errors.js";
import { AdvisoryLock } from "./postgres-lock.js";
import { migrate } from "./postgres-migrations.js";
import { StoreNames } from "./postgres-names.js";
import { Notifier } from "./postgres-notifier.js";
import {
  appendLogsSql,
  backupSql,
  decodeStore,
  deletesSql,
  logWritesSql,
  metaSql,
  putTasksSql,
  readStoreSql,
  restoreSql,
} from "./postgres-statements.js";

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
  private readonly names: StoreNames;
  private readonly self = randomUUID();
  private readonly lock: AdvisoryLock;
  private readonly commits: PostgresCommits;
  private readonly listeners = new Set<() => void>();
  private notifier: Notifier | undefined;
  private context: DriverContext | undefined;
  private closed = false;
  private readonly onPoolError = (error: Error) => this.warn(toDriverError(error, "idle connection") as Error);

  constructor(options: PostgresStorageDriverOptions = {}) {
    this.names = new StoreNames(options.schema ?? "taskstore");
    const { name } = this;
    const lockTimeoutMs = numberOption(options.lockTimeoutMs, "lockTimeoutMs", name, 30_000);
    const confirmTimeoutMs = numberOption(options.confirmTimeoutMs, "confirmTimeoutMs", name, 5_000);
    const connectTimeoutMs = numberOption(options.connectTimeoutMs, "connectTimeoutMs", name, 5_000);
    const poolSize = numberOption(options.poolSize, "poolSize", name, 10, { min: 1, integer: true });
    this.ownsPool = !options.pool;
    this.pool =
      options.pool ??
      new pg.Pool({
        ...(options.connectionString ? { connectionString: options.connectionString } : {}),
        connectionTimeoutMillis: connectTimeoutMs,
        max: poolSize,
        application_name: "taskstore",
        keepAlive: true,
      });
    // An idle connection the server closed (a restart) is reported, never an uncaught 'error'.
    this.pool.on("error", this.onPoolError);
    this.lock = new AdvisoryLock(this.pool, this.names.storeLock, lockTimeoutMs, (error) => this.warn(error));
    this.commits = new PostgresCommits(this.pool, this.names, this.self, lockTimeoutMs, confirmTimeoutMs, (doing, work) =>
      this.withClient(doing, work),
    );
  }

  attach(context: DriverContext): void {
    this.context = context;
  }

  /** Creates the schema and runs pending migrations, under the schema's migration lock. */
  async initialize(): Promise<void> {
    const migrated = this.withClient("initialize", async (client) => {
      await client.query("BEGIN");
      try {
        await client.query(`SELECT pg_advisory_xact_lock(${this.names.migrationLock})`);
        await migrate(client, this.names.s);
        await client.query("COMMIT");
      } catch (error) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw error;
      }
    });
    // A second connection made beside the first: a TaskManager's LISTEN takes one, and its load
    // would otherwise wait for a connection to be made after it (a fifth of a 1,000-task load).
    const second = this.ownsPool ? this.warmConnection() : undefined;
    await Promise.all([migrated, second]);
  }

  /** Makes a connection and leaves it idle in the pool; a failure is the next query's to report. */
  private async warmConnection(): Promise<void> {
    try {
      (await this.pool.connect()).release();
    } catch {
      // the migration's connection reports an outage; this one is only a head start
    }
  }

  async loadData(): Promise<StorageData> {
    return this.withClient("loadData", async (client) => {
      // On an error mid-way the connection goes back to the pool only after ROLLBACK, never
      // inside an aborted transaction.
      let results: pg.QueryResult[];
      try {
        results = (await client.query(readStoreSql(this.names.s))) as unknown as pg.QueryResult[];
      } catch (error) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw error;
      }
      return decodeStore(results, this.names.s);
    });
  }

  /** Replaces the whole store in one transaction. */
  async saveData(data: StorageData): Promise<void> {
    const { s } = this.names;
    const { envelope, tasks } = splitStore(data);
    const logs = tasks.flatMap((task) => task.logs.map((entry) => [task.id, JSON.stringify(entry)] as const));
    await this.commits.run(
      "saveData",
      async () => [
        `DELETE FROM ${s}.logs`,
        `DELETE FROM ${s}.tasks`,
        ...putTasksSql(s, tasks.map(taskBody)),
        ...appendLogsSql(s, logs),
        ...metaSql(s, { version: envelope.version, extra: envelope.extra, extraMeta: envelope.metadataExtra }),
      ],
      { lastUpdated: envelope.lastUpdated },
    );
  }

  /**
   * One change set, one transaction: the store's advisory lock first (so every reader.get sees
   * the latest committed state and no other writer can slip in between read and write), then
   * `work`, then its writes. A `work` that throws rolls everything back.
   */
  async transact(work: (reader: StoreReader) => Promise<WriteSet>, options: TransactOptions = {}): Promise<void> {
    const { s } = this.names;
    await this.commits.run(
      "transact",
      async (tx) => {
        const writes = await work({ get: (id) => tx.get(id), version: () => tx.version() });
        return [
          ...putTasksSql(s, writes.puts),
          ...logWritesSql(s, writes.logs, tx.logCounts),
          ...deletesSql(s, writes.deletes),
          ...(writes.version ? metaSql(s, { version: writes.version }) : []),
        ];
      },
      {},
      options.commitId,
    );
  }

  /**
   * Copies the store into the schema `<schema>__backup` (replacing the previous backup), in one
   * transaction under the store's lock, so the copy is one consistent state.
   */
  async backup(): Promise<void> {
    const at = Date.now();
    await this.commits.run("backup", async () => backupSql(this.names.s, this.names.backup, at), false);
  }

  /**
   * Renames the current schema to `<schema>__aside_<epoch ms>` (never dropped), makes a fresh one
   * through the migrations and copies the backup into it. One transaction: all of it or nothing.
   */
  async restore(): Promise<RestoreResult> {
    const { s, backup } = this.names;
    const aside = this.names.aside(Date.now());
    await this.commits.run("restore", async (tx) => {
      await tx.begin();
      const { client } = tx;
      const { rows } = await client.query(
        "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AND to_regclass($3) IS NOT NULL AS ok",
        [`${backup}.tasks`, `${backup}.logs`, `${backup}.meta`],
      );
      if (!rows[0]?.ok) throw errors.corrupt(`the store ${s} has no backup (schema ${backup}) to restore`);
      await client.query(`SELECT pg_advisory_xact_lock(${this.names.migrationLock}); ALTER SCHEMA ${s} RENAME TO "${aside}"`);
      await migrate(client, s);
      return restoreSql(s, backup);
    });
    this.commits.forgetVersion();
    return { movedTo: `postgres schema ${aside}`, restoredFrom: `postgres schema ${this.names.schema}__backup` };
  }

  async acquireLock(): Promise<void> {
    await this.lock.acquire();
  }

  async releaseLock(): Promise<void> {
    await this.lock.release();
  }

  /**
   * LISTENs (on a connection of its own) for commits of other instances on this store. Resolves
   * once the LISTEN is live, so a load after it misses no commit (one made between the load's
   * read and a LISTEN still on its way would not be announced).
   */
  async watch(listener: () => void): Promise<() => void> {
    this.listeners.add(listener);
    if (!this.notifier) {
      this.notifier = new Notifier(
        this.pool,
        `"${this.names.channel}"`,
        this.self,
        () => {
          for (const each of this.listeners) each();
        },
        (error) => this.warn(error),
      );
    }
    await this.notifier.start();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        void this.notifier?.stop();
        this.notifier = undefined;
      }
    };
  }

  async describe(): Promise<DriverDescription> {
    return this.withClient("describe", async (client) => ({ driver: this.name, ...(await describeStore(client, this.names)) }));
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

  private warn(error: Error): void {
    this.context?.warn(error);
  }
}
