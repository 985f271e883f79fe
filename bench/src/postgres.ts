import { EventBus, type StorageData, type StoredTask, TaskManager, TaskRepository } from "@taskstore/core";
import { PostgresStorageDriver } from "@taskstore/driver-postgres";
import { startPostgres } from "@taskstore/test-services";
import pg from "pg";
import type { BenchOptions, BenchRow, BenchSuite } from "./types.js";

/**
 * The PostgreSQL driver, through TaskManager (validation, change sets, group commit), against raw
 * `pg` on the same tables and server (fsync on, synchronous_commit on: the same durability):
 * - "raw pg, same statements" sends, per operation, exactly what the driver sends for one change
 *   set (BEGIN, the advisory lock, the version and task reads; then the upsert, the log INSERT,
 *   lastUpdated, NOTIFY and COMMIT), so the ratio is the driver's own overhead;
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
  const runs = options.quick ? 1 : 3;
  const sequential = options.quick ? 100 : 300;
  const rounds = options.quick ? 4 : 10; // of 32 concurrent operations
  const rows: BenchRow[] = [];
  const scenarios: [string, (kind: Kind, schema: string) => Promise<number>][] = [
    ["create, sequential, 1,000 tasks", (kind, schema) => measure(url, kind, schema, "create", sequential, 1)],
    ["appendOutput, sequential, 1,000 tasks", (kind, schema) => measure(url, kind, schema, "append", sequential, 1)],
    ["appendOutput, 32 concurrent, 1,000 tasks", (kind, schema) => measure(url, kind, schema, "append", rounds, 32)],
  ];
  for (const [scenario, bench] of scenarios) {
    const [driver, raw, minimal] = (await medians(url, runs, [
      (schema) => bench("driver", schema),
      (schema) => bench("raw", schema),
      (schema) => bench("minimal", schema),
    ])) as [number, number, number];
    rows.push({
      scenario,
      subject: "postgres driver (TaskManager)",
      opsPerSec: driver,
      latencyMs: 1000 / driver,
      note: ratio(driver, raw),
    });
    rows.push({ scenario, subject: "raw pg, same statements", opsPerSec: raw, latencyMs: 1000 / raw });
    rows.push({
      scenario,
      subject: "raw pg, minimal (no lock, read, NOTIFY)",
      opsPerSec: minimal,
      latencyMs: 1000 / minimal,
      note: ratio(driver, minimal),
    });
  }
  const scenario = "load of 1,000 tasks";
  const [loadData, loadManager, loadRaw] = (await medians(url, options.quick ? 3 : 7, [
    (schema) => measureLoad(url, "loadData", schema),
    (schema) => measureLoad(url, "manager", schema),
    (schema) => measureLoad(url, "raw", schema),
  ])) as [number, number, number];
  rows.push({
    scenario,
    subject: "postgres driver loadData()",
    opsPerSec: loadData,
    latencyMs: 1000 / loadData,
    note: ratio(loadData, loadRaw),
  });
  rows.push({ scenario, subject: "TaskManager.loadFromRepository() (validates)", opsPerSec: loadManager, latencyMs: 1000 / loadManager });
  rows.push({ scenario, subject: "raw pg (two SELECTs + JSON)", opsPerSec: loadRaw, latencyMs: 1000 / loadRaw });
  return rows;
}

type Kind = "driver" | "raw" | "minimal";

/** Runs each bench `runs` times, alternating, each on a fresh schema; returns each one's median. */
async function medians(url: string, runs: number, benches: ((schema: string) => Promise<number>)[]): Promise<number[]> {
  const results: number[][] = benches.map(() => []);
  let n = 0;
  for (let i = 0; i < runs; i++) {
    for (const [k, bench] of benches.entries()) {
      const schema = `bench_${process.pid}_${n++}`;
      try {
        results[k]?.push(await bench(schema));
      } finally {
        await sql(url, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      }
    }
  }
  return results.map((values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)] as number);
}

function ratio(driver: number, raw: number): string {
  return `overhead ${(raw / driver).toFixed(2)}x raw`;
}

async function sql(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(text);
  await client.end();
}

function seedTasks(count: number): StoredTask[] {
  const now = Date.now();
  return Array.from({ length: count }, (_, i) => ({
    id: `seed-${String(i).padStart(6, "0")}`,
    title: `seeded task ${i}`,
    description: "a task that was there before the benchmark started",
    status: "running" as const,
    progress: { percent: i % 100 },
    metadata: { index: i, tags: ["bench"] },
    createdAt: now + i,
    updatedAt: now + i,
    children: [],
    logs: [
      { timestamp: now + i, output: `seeded output ${i}`, type: "log" as const },
      { timestamp: now + i + 1, output: "second line", type: "stdout" as const },
    ],
  }));
}

async function seed(url: string, schema: string): Promise<StoredTask[]> {
  const tasks = seedTasks(1_000);
  const driver = new PostgresStorageDriver({ connectionString: url, schema });
  await driver.initialize();
  const data: StorageData = { version: "1.0.0", tasks, metadata: { lastUpdated: Date.now(), totalTasks: tasks.length } };
  await driver.saveData(data);
  await driver.close();
  return tasks;
}

/** Operations before the clock starts: connections, plans, the first WAL segment. */
const WARMUP = 30;

/** ops/s of `rounds` rounds of `width` concurrent creates or appends on a store of 1,000 tasks. */
async function measure(url: string, kind: Kind, schema: string, op: "create" | "append", rounds: number, width: number): Promise<number> {
  const seeded = await seed(url, schema);
  const target = (i: number) => (seeded[i % seeded.length] as StoredTask).id;

  if (kind === "driver") {
    const manager = new TaskManager(
      new EventBus(),
      new TaskRepository({ driver: new PostgresStorageDriver({ connectionString: url, schema }) }),
    );
    await manager.loadFromRepository();
    for (let i = 0; i < WARMUP; i++) await manager.appendOutput(target(i), "warm-up");
    const start = performance.now();
    for (let r = 0; r < rounds; r++) {
      const batch: Promise<unknown>[] = [];
      for (let w = 0; w < width; w++) {
        const i = r * width + w;
        batch.push(
          op === "create" ? manager.create({ title: `bench ${i}`, metadata: { i } }) : manager.appendOutput(target(i), `line ${i}`),
        );
      }
      await Promise.all(batch);
    }
    const elapsed = performance.now() - start;
    await manager.close();
    return (rounds * width * 1000) / elapsed;
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
         SELECT pg_notify('taskstore:${schema}', 'raw'); COMMIT`,
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
      const body = { ...bodies.get(id), updatedAt: now };
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
    const now = Date.now();
    const id = `raw-${String(i).padStart(8, "0")}`;
    const task = {
      id,
      title: `bench ${i}`,
      status: "pending",
      progress: { percent: 0 },
      metadata: { i },
      createdAt: now,
      updatedAt: now,
      children: [],
    };
    if (kind === "raw") return same(id, task);
    await pool.query(`INSERT INTO ${s}.tasks (id, parent_id, status, body) VALUES ($1, NULL, 'pending', $2::jsonb)`, [
      id,
      JSON.stringify(task),
    ]);
  };
  for (let i = 0; i < WARMUP; i++) await append(target(i), "warm-up");
  const start = performance.now();
  for (let r = 0; r < rounds; r++) {
    const batch: Promise<unknown>[] = [];
    for (let w = 0; w < width; w++) {
      const i = r * width + w;
      batch.push(op === "create" ? create(i) : append(target(i), `line ${i}`));
    }
    await Promise.all(batch);
  }
  const elapsed = performance.now() - start;
  await pool.end();
  return (rounds * width * 1000) / elapsed;
}

/** Loads per second of a store of 1,000 tasks, each with two log entries. */
async function measureLoad(url: string, kind: "loadData" | "manager" | "raw", schema: string): Promise<number> {
  await seed(url, schema);
  const driver = new PostgresStorageDriver({ connectionString: url, schema });
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  // Connections made before the clock starts, on both sides.
  await driver.initialize();
  await pool.query("SELECT 1");
  let loaded = 0;
  const start = performance.now();
  if (kind === "loadData") {
    loaded = (await driver.loadData()).tasks.length;
  } else if (kind === "manager") {
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver }));
    await manager.loadFromRepository();
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
  const elapsed = performance.now() - start;
  await driver.close();
  await pool.end();
  if (loaded !== 1_000) throw new Error(`postgres bench: loaded ${loaded} tasks, expected 1,000`);
  return 1000 / elapsed;
}
