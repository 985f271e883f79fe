import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { EventBus, type StoredTask, TaskManager, TaskRepository } from "@taskstore/core";
import { SQLiteStorageDriver, type SynchronousLevel } from "@taskstore/driver-sqlite";
import Database from "better-sqlite3";
import { inTempDir, loadRows, medians, type PairPlan, rawTaskBody, type Subject, seedTasks, storeOf, versus } from "./measure.js";
import type { BenchOptions, BenchRow, BenchSuite } from "./types.js";

/**
 * The SQLite driver, through TaskManager (validation, change sets, group commit and all), against
 * raw better-sqlite3 at the same `synchronous` level, in two forms: "minimal" does the writes by
 * hand (a create inserts one task row; an append inserts one log row and moves the task's
 * updatedAt, in one transaction); "the same statements" runs what the driver runs for one change
 * set (see `openSubject`), so the ratio to it is the driver's own overhead. Raw calls are
 * synchronous, so raw "32 concurrent" is 32 separate transactions: a hand-written client has no
 * group commit unless someone writes one. Each subject runs in a worker thread of its own (see
 * `paired()`).
 */
export const run: BenchSuite = async (options: BenchOptions) => {
  const runs = options.quick ? 1 : 5;
  const rows: BenchRow[] = [];
  for (const level of ["FULL", "NORMAL"] as const) {
    const at = `synchronous=${level}`;
    // Blocks sized so that each subject's block takes a similar, short time at either level.
    const scale = level === "FULL" ? 1 : 10;
    const sequential: PairPlan = options.quick
      ? { warmup: 50, blocks: 2, rounds: 50 * scale, width: 1 }
      : { warmup: 3_000, blocks: 8, rounds: 100 * scale, width: 1 };
    const concurrent: PairPlan = options.quick
      ? { warmup: 50, blocks: 2, rounds: 2 * scale, width: 32 }
      : { warmup: 3_000, blocks: 8, rounds: 5 * scale, width: 32 };
    const scenarios: [string, "create" | "append", PairPlan][] = [
      [`create, sequential, 1,000 tasks, ${at}`, "create", sequential],
      [`create, 32 concurrent, 1,000 tasks, ${at}`, "create", concurrent],
      [`appendOutput, sequential, 1,000 tasks, ${at}`, "append", sequential],
      [`appendOutput, 32 concurrent, 1,000 tasks, ${at}`, "append", concurrent],
    ];
    for (const [scenario, op, plan] of scenarios) {
      const dir = mkdtempSync(path.join(os.tmpdir(), "taskstore-bench-sqlite-"));
      try {
        const spec = (kind: "driver" | "raw" | "same") => ({
          module: import.meta.url,
          open: "openSubject",
          args: [kind, path.join(dir, `${kind}-${randomUUID()}.db`), level, op],
        });
        const { driver, same, minimal, note } = await versus(spec("driver"), spec("same"), spec("raw"), plan);
        rows.push({ scenario, subject: "sqlite driver (TaskManager)", opsPerSec: driver, note });
        rows.push({ scenario, subject: "raw better-sqlite3, the same statements", opsPerSec: same });
        rows.push({ scenario, subject: "raw better-sqlite3, minimal", opsPerSec: minimal });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
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

/** One side of a write scenario, on its own database file seeded with 1,000 tasks (run in a worker: see `paired()`). */
export async function openSubject(
  kind: "driver" | "raw" | "same",
  file: string,
  level: SynchronousLevel,
  op: "create" | "append",
): Promise<Subject> {
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
    return {
      one: (i) =>
        op === "create" ? manager.create({ title: `bench ${i}`, metadata: { i } }) : manager.appendOutput(target(i), `line ${i}`),
      close: () => manager.close(),
    };
  }

  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${level}`);
  const insertTask = db.prepare("INSERT INTO tasks (id, parent_id, status, body) VALUES (?, ?, ?, ?)");
  const insertLog = db.prepare("INSERT INTO task_logs (task_id, n, ts, type, source, output, extra) VALUES (?, ?, ?, ?, NULL, ?, NULL)");
  const touch = db.prepare("UPDATE tasks SET body = json_set(body, '$.updatedAt', ?) WHERE id = ?");
  const nextN = new Map<string, number>();
  const append = db.transaction((id: string, output: string) => {
    const n = nextN.get(id) ?? 2;
    nextN.set(id, n + 1);
    const now = Date.now();
    insertLog.run(id, n, now, "log", output);
    touch.run(now, id);
  });
  if (kind === "raw") {
    return {
      // Synchronous calls: a raw "32 concurrent" round is 32 separate transactions.
      one: async (i) => {
        if (op === "create") {
          const task = rawTaskBody(i);
          insertTask.run(task.id, null, "pending", JSON.stringify(task));
        } else {
          append(target(i), `line ${i}`);
        }
      },
      close: async () => {
        db.close();
      },
    };
  }

  // The statements the driver runs for one change set: BEGIN IMMEDIATE, the store lock's row (in
  // its own file), the stored version, the task and its log span, the writes, COMMIT; and the
  // check that the file is still the one opened (a restore elsewhere replaces it).
  const lock = new Database(`${file}.lock`);
  lock.pragma("journal_mode = WAL");
  lock.exec(
    "CREATE TABLE IF NOT EXISTS lock (id INTEGER PRIMARY KEY CHECK (id = 1), owner TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL, since INTEGER NOT NULL, expires INTEGER NOT NULL)",
  );
  const lockRow = lock.prepare("SELECT owner, pid, host, since, expires FROM lock WHERE id = 1");
  const begin = db.prepare("BEGIN IMMEDIATE");
  const commit = db.prepare("COMMIT");
  const getVersion = db.prepare("SELECT value FROM meta WHERE key = 'version'");
  const getTask = db.prepare("SELECT body FROM tasks WHERE id = ?");
  const putTask = db.prepare(
    "INSERT INTO tasks (id, parent_id, status, body) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET parent_id = excluded.parent_id, status = excluded.status, body = excluded.body",
  );
  const logSpan = db.prepare(
    "SELECT (SELECT min(n) FROM task_logs WHERE task_id = ?) AS lo, (SELECT max(n) FROM task_logs WHERE task_id = ?) AS hi",
  );
  const setBody = db.prepare("UPDATE tasks SET body = ? WHERE id = ?");
  const inode = statSync(file).ino;
  return {
    one: async (i) => {
      if (statSync(file).ino !== inode) throw new Error("replaced");
      begin.run();
      lockRow.get();
      getVersion.get();
      if (op === "create") {
        const task = rawTaskBody(i);
        getTask.get(task.id);
        putTask.run(task.id, null, "pending", JSON.stringify(task));
      } else {
        const id = target(i);
        const row = getTask.get(id) as { body: string };
        const span = logSpan.get(id, id) as { hi: number };
        const now = Date.now();
        const task = JSON.parse(row.body);
        task.updatedAt = now;
        setBody.run(JSON.stringify(task), id);
        insertLog.run(id, span.hi + 1, now, "log", `line ${i}`);
      }
      commit.run();
    },
    close: async () => {
      lock.close();
      db.close();
    },
  };
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
  let counting = 0;
  if (kind === "loadData") {
    const driver = new SQLiteStorageDriver({ path: file });
    await driver.initialize();
    loaded = (await driver.loadData()).tasks.length;
    await driver.close();
  } else if (kind === "manager") {
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: file }) }));
    await manager.loadFromRepository();
    // The count is not timed: list() copies every task, which is not a load's cost.
    const counted = performance.now();
    loaded = manager.list().length;
    counting = performance.now() - counted;
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
  return 1000 / (performance.now() - start - counting);
}
