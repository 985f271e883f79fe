import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { EventBus, type StorageData, type StoredTask, TaskManager, TaskRepository } from "@taskstore/core";
import { SQLiteStorageDriver, type SynchronousLevel } from "@taskstore/driver-sqlite";
import Database from "better-sqlite3";
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
      const [driver, raw] = (await medians(runs, [(dir) => bench("driver", dir), (dir) => bench("raw", dir)])) as [number, number];
      rows.push({ scenario, subject: "sqlite driver (TaskManager)", opsPerSec: driver, note: ratio(driver, raw) });
      rows.push({ scenario, subject: "raw better-sqlite3", opsPerSec: raw });
    }
  }
  const loads = options.quick ? 2_000 : 10_000;
  const scenario = `load of ${loads.toLocaleString("en-US")} tasks`;
  const [loadData, loadManager, loadRaw] = (await medians(runs, [
    (dir) => measureLoad("loadData", dir, loads),
    (dir) => measureLoad("manager", dir, loads),
    (dir) => measureLoad("raw", dir, loads),
  ])) as [number, number, number];
  rows.push({
    scenario,
    subject: "sqlite driver loadData()",
    opsPerSec: loadData,
    latencyMs: 1000 / loadData,
    note: ratio(loadData, loadRaw),
  });
  rows.push({ scenario, subject: "TaskManager.loadFromRepository() (validates)", opsPerSec: loadManager, latencyMs: 1000 / loadManager });
  rows.push({ scenario, subject: "raw better-sqlite3 (rows + JSON.parse)", opsPerSec: loadRaw, latencyMs: 1000 / loadRaw });
  return rows;
};

/** Runs each bench `runs` times, alternating, each in a fresh folder; returns each one's median. */
async function medians(runs: number, benches: ((dir: string) => Promise<number>)[]): Promise<number[]> {
  const results: number[][] = benches.map(() => []);
  for (let i = 0; i < runs; i++) {
    for (const [k, bench] of benches.entries()) {
      const dir = mkdtempSync(path.join(os.tmpdir(), "taskstore-bench-sqlite-"));
      try {
        results[k]?.push(await bench(dir));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  return results.map((values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)] as number);
}

function ratio(driver: number, raw: number): string {
  return `overhead ${(raw / driver).toFixed(2)}x raw`;
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
    logs: [{ timestamp: now + i, output: `seeded output ${i}`, type: "log" as const }],
  }));
}

function storeOf(tasks: StoredTask[]): StorageData {
  return { version: "1.0.0", tasks, metadata: { lastUpdated: Date.now(), totalTasks: tasks.length } };
}

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
        insertTask.run(id, null, "pending", JSON.stringify(task));
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
  const seeded = seedTasks(count);
  for (const task of seeded) task.logs.push({ timestamp: task.createdAt + 1, output: "second line", type: "stdout" });
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
