import { randomUUID } from "node:crypto";
import { EventBus, type StoredTask, TaskManager, TaskRepository } from "@taskstore/core";
import { PostgresStorageDriver } from "@taskstore/driver-postgres";
import { startPostgres } from "@taskstore/test-services";
import pg from "pg";
import { loadRows, medians, type PairPlan, rawTaskBody, type Subject, seedTasks, storeOf, versus } from "./measure.js";
import type { BenchOptions, BenchRow, BenchSuite } from "./types.js";

/**
 * The PostgreSQL driver, through TaskManager (validation, change sets, group commit), against raw
 * `pg` on the same tables and server (fsync on, synchronous_commit on: the same durability):
 * - "raw pg, same statements" sends, per operation, exactly what the driver sends for one change
 *   set (BEGIN, the advisory lock, the version and task reads; then the upsert, the log INSERT,
 *   lastUpdated, NOTIFY, the transaction's txlog row and COMMIT), so the ratio is the driver's own overhead;
 * - "raw pg, minimal" is the least a hand-written client could do without those guarantees (a
 *   create is one INSERT; an append is BEGIN, INSERT, UPDATE, COMMIT): what the design costs.
 * Raw "32 concurrent" is 32 separate transactions over a pool of 10 connections, as a
 * hand-written client would do it; the driver group-commits them.
 */
export const run: BenchSuite = async (options: BenchOptions) => {
  const server = await startPostgres({ fsync: true });
  try {
    return await suite(server.url, options);
  } finally {
    await server.stop();
  }
};

async function suite(url: string, options: BenchOptions): Promise<BenchRow[]> {
  const sequential: PairPlan = options.quick
    ? { warmup: 30, blocks: 2, rounds: 50, width: 1 }
    : { warmup: 1_500, blocks: 8, rounds: 150, width: 1 };
  const concurrent: PairPlan = options.quick
    ? { warmup: 30, blocks: 2, rounds: 4, width: 32 }
    : { warmup: 1_500, blocks: 8, rounds: 5, width: 32 };
  const rows: BenchRow[] = [];
  const scenarios: [string, "create" | "append", PairPlan][] = [
    ["create, sequential, 1,000 tasks", "create", sequential],
    ["appendOutput, sequential, 1,000 tasks", "append", sequential],
    ["appendOutput, 32 concurrent, 1,000 tasks", "append", concurrent],
  ];
  for (const [scenario, op, plan] of scenarios) {
    const spec = (kind: Kind) => ({ module: import.meta.url, open: "openSubject", args: [url, kind, op] });
    const { driver, same, minimal, note } = await versus(spec("driver"), spec("raw"), spec("minimal"), plan);
    rows.push({ scenario, subject: "postgres driver (TaskManager)", opsPerSec: driver, latencyMs: 1000 / driver, note });
    rows.push({ scenario, subject: "raw pg, same statements", opsPerSec: same, latencyMs: 1000 / same });
    rows.push({ scenario, subject: "raw pg, minimal (no lock, read, NOTIFY)", opsPerSec: minimal, latencyMs: 1000 / minimal });
  }
  const scenario = "load of 1,000 tasks";
  const [loadData, loadManager, loadRaw] = (await medians(options.quick ? 3 : 7, [
    fresh(url, (schema) => measureLoad(url, "loadData", schema)),
    fresh(url, (schema) => measureLoad(url, "manager", schema)),
    fresh(url, (schema) => measureLoad(url, "raw", schema)),
  ])) as [number, number, number];
  rows.push(...loadRows(scenario, "postgres driver", "raw pg (two SELECTs + JSON)", [loadData, loadManager, loadRaw]));
  return rows;
}

type Kind = "driver" | "raw" | "minimal";

let schemas = 0;

/** A bench that runs on a fresh schema, dropped afterwards. */
function fresh(url: string, bench: (schema: string) => Promise<number>): () => Promise<number> {
  return async () => {
    const schema = `bench_${process.pid}_${schemas++}`;
    try {
      return await bench(schema);
    } finally {
      await sql(url, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  };
}

async function sql(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(text);
  await client.end();
}

async function seed(url: string, schema: string): Promise<StoredTask[]> {
  const tasks = seedTasks(1_000, 2);
  const driver = new PostgresStorageDriver({ connectionString: url, schema });
  await driver.initialize();
  await driver.saveData(storeOf(tasks));
  await driver.close();
  return tasks;
}

/** One side of a write scenario, on a fresh schema of its own seeded with 1,000 tasks, dropped at close (run in a worker: see `paired()`). */
export async function openSubject(url: string, kind: Kind, op: "create" | "append"): Promise<Subject> {
  // Unique across the worker threads, which share the pid and each count from 0.
  const schema = `bench_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const seeded = await seed(url, schema);
  const target = (i: number) => (seeded[i % seeded.length] as StoredTask).id;

  if (kind === "driver") {
    const manager = new TaskManager(
      new EventBus(),
      new TaskRepository({ driver: new PostgresStorageDriver({ connectionString: url, schema }) }),
    );
    await manager.loadFromRepository();
    return {
      one: (i) =>
        op === "create" ? manager.create({ title: `bench ${i}`, metadata: { i } }) : manager.appendOutput(target(i), `line ${i}`),
      close: async () => {
        await manager.close();
        await sql(url, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      },
    };
  }

  const pool = new pg.Pool({ connectionString: url, max: 10 });
  const s = `"${schema}"`;
  const bodies = new Map(seeded.map(({ logs: _logs, ...body }) => [body.id, body as Record<string, unknown>]));
  /** The driver's two round trips: BEGIN, lock, version, the task; then the writes, NOTIFY, COMMIT. */
  const same = async (id: string, body: Record<string, unknown>, entry?: object) => {
    const client = await pool.connect();
    try {
      await client.query(
        `BEGIN; SET LOCAL lock_timeout = 30000; SELECT pg_advisory_xact_lock(1, 2); SELECT value FROM ${s}.meta WHERE key = 'version';
         SELECT coalesce(t.raw, t.body::json) AS body, (SELECT count(*)::int FROM ${s}.logs l WHERE l.task_id = t.id) AS n FROM ${s}.tasks t WHERE t.id = ${pg.escapeLiteral(id)}`,
      );
      const log = entry
        ? `INSERT INTO ${s}.logs (task_id, entry) SELECT v.id, v.entry FROM (VALUES (${pg.escapeLiteral(id)}, ${pg.escapeLiteral(JSON.stringify(entry))}::json, 0)) AS v(id, entry, n)
           WHERE EXISTS (SELECT 1 FROM ${s}.tasks t WHERE t.id = v.id) ORDER BY v.n;`
        : "";
      await client.query(
        `INSERT INTO ${s}.tasks (id, parent_id, status, body, raw) VALUES (${pg.escapeLiteral(id)}, NULL, 'pending', ${pg.escapeLiteral(JSON.stringify(body))}::jsonb, NULL)
           ON CONFLICT (id) DO UPDATE SET parent_id = excluded.parent_id, status = excluded.status, body = excluded.body, raw = excluded.raw;
         ${log}
         INSERT INTO ${s}.meta (key, value) VALUES ('lastUpdated', '${Date.now()}'::json) ON CONFLICT (key) DO UPDATE SET value = excluded.value;
         SELECT pg_notify('taskstore:${schema}', 'raw');
         INSERT INTO ${s}.txlog (id) VALUES ('${randomUUID()}'); COMMIT`,
      );
    } catch (error) {
      await client.query("ROLLBACK");
      throw error;
    } finally {
      client.release();
    }
  };
  const append = async (id: string, output: string) => {
    const now = Date.now();
    if (kind === "raw") {
      const body = Object.assign({}, bodies.get(id));
      body.updatedAt = now;
      bodies.set(id, body);
      return same(id, body, { timestamp: now, output, type: "log" });
    }
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      await client.query(`INSERT INTO ${s}.logs (task_id, entry) VALUES ($1, $2::json)`, [
        id,
        JSON.stringify({ timestamp: now, output, type: "log" }),
      ]);
      await client.query(`UPDATE ${s}.tasks SET body = jsonb_set(body, '{updatedAt}', to_jsonb($2::bigint)) WHERE id = $1`, [id, now]);
      await client.query("COMMIT");
    } finally {
      client.release();
    }
  };
  const create = async (i: number) => {
    const task = rawTaskBody(i);
    const id = task.id;
    if (kind === "raw") return same(id, task);
    await pool.query(`INSERT INTO ${s}.tasks (id, parent_id, status, body) VALUES ($1, NULL, 'pending', $2::jsonb)`, [
      id,
      JSON.stringify(task),
    ]);
  };
  return {
    one: (i) => (op === "create" ? create(i) : append(target(i), `line ${i}`)),
    close: async () => {
      await pool.end();
      await sql(url, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    },
  };
}

/** Loads per second of a store of 1,000 tasks, each with two log entries. */
async function measureLoad(url: string, kind: "loadData" | "manager" | "raw", schema: string): Promise<number> {
  await seed(url, schema);
  const driver = new PostgresStorageDriver({ connectionString: url, schema });
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  // Connections made before the clock starts, on both sides.
  await driver.initialize();
  await pool.query("SELECT 1");
  // Both sides initialized before the clock: the driver, and the repository over it (which
  // runs the driver's initialize() once more, a round trip, when it is new).
  const repository = kind === "manager" ? new TaskRepository({ driver }) : undefined;
  await repository?.initialize();
  let loaded = 0;
  let elapsed = 0;
  const start = performance.now();
  if (kind === "loadData") {
    loaded = (await driver.loadData()).tasks.length;
  } else if (repository) {
    const manager = new TaskManager(new EventBus(), repository);
    await manager.loadFromRepository();
    // Stopped before the count: list() copies every task, which is not a load's cost.
    elapsed = performance.now() - start;
    loaded = manager.list().length;
    await manager.close();
  } else {
    const s = `"${schema}"`;
    const tasks = new Map<string, { logs: unknown[] }>();
    for (const row of (await pool.query(`SELECT id, body FROM ${s}.tasks ORDER BY pos`)).rows) tasks.set(row.id, { ...row.body, logs: [] });
    for (const row of (await pool.query(`SELECT task_id, entry FROM ${s}.logs ORDER BY seq`)).rows)
      tasks.get(row.task_id)?.logs.push(row.entry);
    loaded = tasks.size;
  }
  elapsed ||= performance.now() - start;
  await driver.close();
  await pool.end();
  if (loaded !== 1_000) throw new Error(`postgres bench: loaded ${loaded} tasks, expected 1,000`);
  return 1000 / elapsed;
}
