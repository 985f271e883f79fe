import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { EventBus, type StorageData, type StoredTask, TaskManager, TaskRepository } from "@taskstore/core";
import { JSONFileStorageDriver } from "@taskstore/driver-json-file";
import { Low } from "lowdb";
import { JSONFile } from "lowdb/node";
import { median } from "./measure.js";
import type { BenchOptions, BenchRow, BenchSuite } from "./types.js";

// The JSON file driver through TaskManager, beside: the seed's naive design (the whole file
// rewritten, with fsync, on every operation), lowdb 7 (JSONFile adapter: temp file and rename,
// no fsync) and raw append+fdatasync of one line per operation (the disk's limit for durable
// single writes). Every subject appends one log line to a random task per operation.

const SUBJECT = {
  driver: "json-file driver (TaskManager)",
  naive: "naive rewrite+fsync per op (seed)",
  lowdb: "lowdb 7 JSONFile (no fsync)",
  raw: "raw append+fdatasync",
} as const;

/** A subject under test: `op(i)` does one durable appendOutput-like operation. */
interface Subject {
  op(i: number): Promise<void>;
  close(): Promise<void>;
}

export const run: BenchSuite = async (options) => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "taskstore-bench-json-"));
  const rows: BenchRow[] = [];
  try {
    for (const size of [1_000, 10_000]) {
      for (const concurrency of [1, 32]) {
        const scenario = `appendOutput, ${concurrency === 1 ? "sequential" : `${concurrency} concurrent`}, ${size.toLocaleString("en-US")} tasks`;
        for (const [key, open] of Object.entries(OPENERS)) {
          const dir = await fs.mkdtemp(path.join(root, `${key}-`));
          const subject = await open(dir, makeData(size));
          try {
            rows.push({ scenario, subject: SUBJECT[key as keyof typeof SUBJECT], ...(await measure(subject, concurrency, options)) });
          } finally {
            await subject.close();
            await fs.rm(dir, { recursive: true, force: true });
          }
        }
      }
    }
    rows.push(...(await measureLoads(root, options)));
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
  return rows;
};

const OPENERS: Record<keyof typeof SUBJECT, (dir: string, data: StorageData) => Promise<Subject>> = {
  async driver(dir, data) {
    const file = path.join(dir, "tasks.json");
    await seed(new JSONFileStorageDriver(file), data);
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver(file) }));
    await manager.loadFromRepository();
    const ids = data.tasks.map((task) => task.id);
    return {
      op: (i) => manager.appendOutput(pick(ids, i), `line ${i}`),
      close: () => manager.close(),
    };
  },
  async naive(dir, data) {
    // The seed's design: the whole store in memory, rewritten (temp file, fsync, rename) on every
    // operation, one operation at a time.
    const file = path.join(dir, "tasks.json");
    let chain = Promise.resolve();
    return {
      op: (i) => {
        chain = chain.then(async () => {
          pick(data.tasks, i).logs.push({ timestamp: Date.now(), output: `line ${i}`, type: "log" });
          const temp = `${file}.tmp`;
          const handle = await fs.open(temp, "w", 0o600);
          await handle.writeFile(JSON.stringify(data));
          await handle.sync();
          await handle.close();
          await fs.rename(temp, file);
        });
        return chain;
      },
      close: async () => {
        await chain;
      },
    };
  },
  async lowdb(dir, data) {
    const db = new Low<StorageData>(new JSONFile(path.join(dir, "tasks.json")), data);
    await db.write();
    return {
      op: async (i) => {
        pick(db.data.tasks, i).logs.push({ timestamp: Date.now(), output: `line ${i}`, type: "log" });
        await db.write();
      },
      close: async () => undefined,
    };
  },
  async raw(dir) {
    const handle = await fs.open(path.join(dir, "log.jsonl"), "a", 0o600);
    return {
      op: async (i) => {
        await handle.write(`${JSON.stringify({ timestamp: Date.now(), output: `line ${i}`, type: "log" })}\n`);
        await handle.datasync();
      },
      close: () => handle.close(),
    };
  },
};

/** Runs operations from `concurrency` lanes for a fixed time; ops/s and the median latency. */
async function measure(subject: Subject, concurrency: number, options: BenchOptions): Promise<Omit<BenchRow, "scenario" | "subject">> {
  const budgetMs = options.quick ? 300 : 2_500;
  await subject.op(-1); // warm-up: first-write work (e.g. the driver's first backup) is not the steady state
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  const lane = async () => {
    while (performance.now() - started < budgetMs) {
      const t = performance.now();
      await subject.op(next++);
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  const elapsed = performance.now() - started;
  return { opsPerSec: round((latencies.length / elapsed) * 1000), latencyMs: round(median(latencies)), note: `${latencies.length} ops` };
}

/** Loading a store of 10,000 tasks, median of several loads. */
async function measureLoads(root: string, options: BenchOptions): Promise<BenchRow[]> {
  const data = makeData(10_000);
  const runs = options.quick ? 3 : 7;
  const scenario = "load, 10,000 tasks";
  const rows: BenchRow[] = [];
  const time = async (subject: string, prepare: () => Promise<() => Promise<unknown>>) => {
    const load = await prepare();
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await load();
      times.push(performance.now() - t);
    }
    const ms = median(times);
    rows.push({ scenario, subject, opsPerSec: round(1000 / ms), latencyMs: round(ms) });
  };
  await time(SUBJECT.driver, async () => {
    const file = path.join(root, "load-driver.json");
    await seed(new JSONFileStorageDriver(file), data);
    return async () => {
      // A fresh process's view: a new repository and manager, loading and validating the store.
      const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver(file) }));
      await manager.loadFromRepository();
      await manager.close();
    };
  });
  await time(SUBJECT.naive, async () => {
    const file = path.join(root, "load-naive.json");
    await fs.writeFile(file, JSON.stringify(data));
    return async () => JSON.parse(await fs.readFile(file, "utf8"));
  });
  await time(SUBJECT.lowdb, async () => {
    const file = path.join(root, "load-lowdb.json");
    await new Low<StorageData>(new JSONFile(file), data).write();
    return () => new Low<StorageData>(new JSONFile(file), data).read();
  });
  await time(SUBJECT.raw, async () => {
    const file = path.join(root, "load-raw.jsonl");
    await fs.writeFile(file, `${data.tasks.map((task) => JSON.stringify(task)).join("\n")}\n`);
    return async () =>
      (await fs.readFile(file, "utf8"))
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line));
  });
  return rows;
}

async function seed(driver: JSONFileStorageDriver, data: StorageData): Promise<void> {
  await driver.initialize();
  await driver.saveData(data);
  await driver.close();
}

/** A store of `size` tasks like an agent's: a title, a description, some metadata, a few log lines. */
function makeData(size: number): StorageData {
  const now = Date.now();
  const tasks: StoredTask[] = [];
  for (let i = 0; i < size; i++) {
    const id = `task-${String(i).padStart(6, "0")}`;
    tasks.push({
      id,
      title: `Task ${i}: refactor module ${i % 97}`,
      description: `Work item ${i} created by the benchmark`,
      status: i % 3 === 0 ? "completed" : "running",
      progress: { percent: i % 101 },
      metadata: { priority: i % 5, tags: ["bench", `group-${i % 10}`] },
      createdAt: now,
      updatedAt: now,
      children: [],
      logs: [
        { timestamp: now, output: `started task ${i}`, type: "info" },
        { timestamp: now, output: `compiling module ${i % 97}`, type: "stdout" },
      ],
    });
  }
  return { version: "1.0.0", tasks, metadata: { lastUpdated: now, totalTasks: size } };
}

function pick<T>(items: readonly T[], i: number): T {
  return items[Math.abs(i * 7919) % items.length] as T;
}

function round(value: number): number {
  return value >= 100 ? Math.round(value) : Math.round(value * 10) / 10;
}
