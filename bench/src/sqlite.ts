import path from "node:path";
import { EventBus, type StoredTask, TaskManager, TaskRepository } from "@taskstore/core";
import { SQLiteStorageDriver, type SynchronousLevel } from "@taskstore/driver-sqlite";
import Database from "better-sqlite3";
import { inTempDir, loadRows, medians, opsPerSec, overhead, rawTaskBody, seedTasks, storeOf } from "./measure.js";
import type { BenchOptions, BenchRow, BenchSuite } from "./types.js";

/**
 * The SQLite driver, through TaskManager (validation, change sets, group commit and all), against
 * raw better-sqlite3 doing the same writes by hand at the same `synchronous` level: a create
 * inserts one task row; an append inserts one log row and moves the task's updatedAt, in one
 * transaction. Raw calls are synchronous, so raw "32 concurrent" is 32 separate transactions: a
 * hand-written client has no group commit unless someone writes one.
 */
export const run: BenchSuite = async (options: BenchOptions) => {
  const runs = options.quick ? 1 : 5;
  const sequential = options.quick ? 100 : 300;
  const rounds = options.quick ? 4 : 10; // of 32 concurrent operations
  const rows: BenchRow[] = [];
  for (const level of ["FULL", "NORMAL"] as const) {
    const at = `synchronous=${level}`;
    const scenarios: [string, (kind: "driver" | "raw", dir: string) => Promise<number>][] = [
      [`create, sequential, 1,000 tasks, ${at}`, (kind, dir) => measure(kind, dir, level, "create", sequential, 1)],
      [`create, 32 concurrent, 1,000 tasks, ${at}`, (kind, dir) => measure(kind, dir, level, "create", rounds, 32)],
      [`appendOutput, sequential, 1,000 tasks, ${at}`, (kind, dir) => measure(kind, dir, level, "append", sequential, 1)],
      [`appendOutput, 32 concurrent, 1,000 tasks, ${at}`, (kind, dir) => measure(kind, dir, level, "append", rounds, 32)],
    ];
    for (const [scenario, bench] of scenarios) {
      // Alternating runs, so that a slow spell of the disk's fsync hits both sides alike.
      const [driver, raw] = (await medians(runs, [fresh((dir) => bench("driver", dir)), fresh((dir) => bench("raw", dir))])) as [
        number,
        number,
      ];
      rows.push({ scenario, subject: "sqlite driver (TaskManager)", opsPerSec: driver, note: overhead(driver, raw) });
      rows.push({ scenario, subject: "raw better-sqlite3", opsPerSec: raw });
    }
  }
  const loads = options.quick ? 2_000 : 10_000;
  const scenario = `load of ${loads.toLocaleString("en-US")} tasks`;
  const [loadData, loadManager, loadRaw] = (await medians(runs, [
    fresh((dir) => measureLoad("loadData", dir, loads)),
    fresh((dir) => measureLoad("manager", dir, loads)),
    fresh((dir) => measureLoad("raw", dir, loads)),
  ])) as [number, number, number];
  rows.push(...loadRows(scenario, "sqlite driver", "raw better-sqlite3 (rows + JSON.parse)", [loadData, loadManager, loadRaw]));
  return rows;
};

/** Each bench run in a fresh folder. */
const fresh = (bench: (dir: string) => Promise<number>) => inTempDir("taskstore-bench-sqlite-", bench);

/** Operations before the clock starts: statement caches, JIT and the WAL file's first growth. */
const WARMUP = 50;

/** ops/s of `rounds` rounds of `width` concurrent creates or appends on a store of 1,000 tasks. */
async function measure(
  kind: "driver" | "raw",
  dir: string,
  level: SynchronousLevel,
  op: "create" | "append",
  rounds: number,
  width: number,
): Promise<number> {
  const file = path.join(dir, "tasks.db");
  const seeded = seedTasks(1_000);
  const seed = new SQLiteStorageDriver({ path: file, synchronous: level });
  await seed.initialize();
  await seed.saveData(storeOf(seeded));
  await seed.close();
  const target = (i: number) => (seeded[i % seeded.length] as StoredTask).id;

  if (kind === "driver") {
    const manager = new TaskManager(
      new EventBus(),
      new TaskRepository({ driver: new SQLiteStorageDriver({ path: file, synchronous: level }) }),
    );
    await manager.loadFromRepository();
    for (let i = 0; i < WARMUP; i++) await manager.appendOutput(target(i), "warm-up");
    const result = await opsPerSec(rounds, width, (i) =>
      op === "create" ? manager.create({ title: `bench ${i}`, metadata: { i } }) : manager.appendOutput(target(i), `line ${i}`),
    );
    await manager.close();
    return result;
  }

  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${level}`);
  const insertTask = db.prepare("INSERT INTO tasks (id, parent_id, status, body) VALUES (?, ?, ?, ?)");
  const insertLog = db.prepare("INSERT INTO task_logs (task_id, n, ts, type, source, output, extra) VALUES (?, ?, ?, ?, NULL, ?, NULL)");
  const touch = db.prepare("UPDATE tasks SET body = json_set(body, '$.updatedAt', ?) WHERE id = ?");
  const nextN = new Map<string, number>();
  const append = db.transaction((id: string, output: string) => {
    const n = nextN.get(id) ?? 1;
    nextN.set(id, n + 1);
    const now = Date.now();
    insertLog.run(id, n, now, "log", output);
    touch.run(now, id);
  });
  for (let i = 0; i < WARMUP; i++) append(target(i), "warm-up");
  const start = performance.now();
  for (let r = 0; r < rounds; r++) {
    for (let w = 0; w < width; w++) {
      const i = r * width + w;
      if (op === "create") {
        const task = rawTaskBody(i);
        insertTask.run(task.id, null, "pending", JSON.stringify(task));
      } else {
        append(target(i), `line ${i}`);
      }
    }
    await Promise.resolve();
  }
  const elapsed = performance.now() - start;
  db.close();
  return (rounds * width * 1000) / elapsed;
}

/** Loads per second of a store of `count` tasks, each with two log entries. */
async function measureLoad(kind: "loadData" | "manager" | "raw", dir: string, count: number): Promise<number> {
  const file = path.join(dir, "tasks.db");
  const seeded = seedTasks(count, 2);
  const seed = new SQLiteStorageDriver({ path: file });
  await seed.initialize();
  await seed.saveData(storeOf(seeded));
  await seed.close();
  const start = performance.now();
  let loaded = 0;
  if (kind === "loadData") {
    const driver = new SQLiteStorageDriver({ path: file });
    await driver.initialize();
    loaded = (await driver.loadData()).tasks.length;
    await driver.close();
  } else if (kind === "manager") {
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: file }) }));
    await manager.loadFromRepository();
    loaded = manager.list().length;
    await manager.close();
  } else {
    const db = new Database(file, { readonly: true });
    const tasks = new Map<string, { logs: unknown[] }>();
    for (const row of db.prepare("SELECT id, body FROM tasks ORDER BY seq").iterate() as IterableIterator<{ id: string; body: string }>) {
      const task = JSON.parse(row.body);
      task.logs = [];
      tasks.set(row.id, task);
    }
    for (const row of db.prepare("SELECT task_id, ts, type, output FROM task_logs ORDER BY task_id, n").iterate() as IterableIterator<{
      task_id: string;
      ts: number;
      type: string;
      output: string;
    }>) {
      tasks.get(row.task_id)?.logs.push({ timestamp: row.ts, output: row.output, type: row.type });
    }
    loaded = tasks.size;
    db.close();
  }
  if (loaded !== count) throw new Error(`sqlite bench: loaded ${loaded} tasks, expected ${count}`);
  return 1000 / (performance.now() - start);
}
