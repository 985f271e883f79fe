import { randomUUID } from "node:crypto";
import { promises as fs, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { EventBus, type StorageData, type StoredTask, TaskManager, TaskRepository } from "@taskstore/core";
import { JSONFileStorageDriver } from "@taskstore/driver-json-file";
import { Low } from "lowdb";
import { JSONFile } from "lowdb/node";
import { medians, type PairPlan, paired, type Subject, type SubjectSpec } from "./measure.js";
import type { BenchOptions, BenchRow, BenchSuite } from "./types.js";

// The JSON file driver through TaskManager, side by side (each subject in a worker thread of its
// own, taking turns block by block: see `paired()`) with: raw append+fdatasync of one line per
// operation (the disk's limit for durable single writes), the seed's naive design (the whole
// file rewritten, with fsync, on every operation) and lowdb 7 (JSONFile adapter: temp file and
// rename, no fsync). Every subject appends one log line to a task of a store of N tasks per
// operation. Then loads of 10,000 tasks, and the size of tasks.json after compaction.

const SUBJECT = {
  driver: "json-file driver (TaskManager)",
  naive: "naive rewrite+fsync per op (seed)",
  lowdb: "lowdb 7 JSONFile (no fsync)",
  raw: "raw append+fdatasync",
} as const;

type Kind = keyof typeof SUBJECT;

export const run: BenchSuite = async (options: BenchOptions) => {
  const root = mkdtempSync(path.join(os.tmpdir(), "taskstore-bench-json-"));
  const rows: BenchRow[] = [];
  const q = options.quick;
  // The driver and raw append+fdatasync run at disk speed; the naive design and lowdb rewrite the
  // whole file per operation, so they get short blocks of their own.
  const fast: Record<"sequential" | "concurrent", PairPlan> = {
    sequential: q ? { warmup: 200, blocks: 3, rounds: 200, width: 1 } : { warmup: 2_000, blocks: 8, rounds: 500, width: 1 },
    concurrent: q ? { warmup: 320, blocks: 3, rounds: 10, width: 32 } : { warmup: 3_200, blocks: 8, rounds: 40, width: 32 },
  };
  const slow: Record<"sequential" | "concurrent", PairPlan> = {
    sequential: q ? { warmup: 3, blocks: 2, rounds: 5, width: 1 } : { warmup: 10, blocks: 5, rounds: 20, width: 1 },
    concurrent: q ? { warmup: 32, blocks: 2, rounds: 1, width: 32 } : { warmup: 64, blocks: 5, rounds: 2, width: 32 },
  };
  try {
    const spec = (kind: Kind, size: number): SubjectSpec => {
      const dir = path.join(root, `${kind}-${size}-${randomUUID().slice(0, 8)}`);
      mkdirSync(dir);
      return { module: import.meta.url, open: "openSubject", args: [kind, dir, size] };
    };
    const scenarios: [number, "sequential" | "concurrent"][] = [
      [1_000, "sequential"],
      [1_000, "concurrent"],
      [10_000, "sequential"],
      [10_000, "concurrent"],
      [100_000, "sequential"],
    ];
    for (const [size, mode] of scenarios) {
      // The time of one operation is 1/rate only when they run one at a time.
      const latency = (rate: number) => (mode === "sequential" ? { latencyMs: round(1000 / rate) } : {});
      const scenario = `appendOutput, ${mode === "sequential" ? "sequential" : "32 concurrent"}, ${size.toLocaleString("en-US")} tasks`;
      process.stderr.write(`bench: json-file: ${scenario}\n`);
      const [driver, raw] = (await paired([spec("driver", size), spec("raw", size)], fast[mode])) as [number, number];
      const slowRows: BenchRow[] = [];
      let naive: number | undefined;
      if (size <= 10_000) {
        const [naiveRate, lowdbRate] = (await paired([spec("naive", size), spec("lowdb", size)], slow[mode])) as [number, number];
        naive = naiveRate;
        slowRows.push({ scenario, subject: SUBJECT.naive, opsPerSec: round(naiveRate), ...latency(naiveRate) });
        slowRows.push({ scenario, subject: SUBJECT.lowdb, opsPerSec: round(lowdbRate), ...latency(lowdbRate) });
      }
      const note = [
        `${(raw / driver).toFixed(2)}x raw's time per op`,
        naive ? `${(driver / naive).toFixed(0)}x the naive design's rate` : "",
      ]
        .filter(Boolean)
        .join("; ");
      rows.push({ scenario, subject: SUBJECT.driver, opsPerSec: round(driver), ...latency(driver), note });
      rows.push(...slowRows);
      rows.push({ scenario, subject: SUBJECT.raw, opsPerSec: round(raw), ...latency(raw) });
    }
    rows.push(...(await measureLoads(root, options)));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return rows;
};

/** One subject of an append scenario, in its own folder with a store of `size` tasks (run in a worker thread: see `paired()`). */
export async function openSubject(kind: Kind, dir: string, size: number): Promise<Subject> {
  const data = makeData(size);
  const ids = data.tasks.map((task) => task.id);
  const file = path.join(dir, "tasks.json");
  switch (kind) {
    case "driver": {
      await seed(file, data);
      const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver(file) }));
      await manager.loadFromRepository();
      return { one: (i) => manager.appendOutput(pick(ids, i), `line ${i}`), close: () => manager.close() };
    }
    case "naive": {
      // The seed's design: the whole store in memory, rewritten (temp file, fsync, rename) on
      // every operation, one operation at a time.
      let chain = Promise.resolve();
      return {
        one: (i) => {
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
    }
    case "lowdb": {
      const db = new Low<StorageData>(new JSONFile(file), data);
      await db.write();
      let chain = Promise.resolve();
      return {
        one: (i) => {
          chain = chain.then(async () => {
            pick(db.data.tasks, i).logs.push({ timestamp: Date.now(), output: `line ${i}`, type: "log" });
            await db.write();
          });
          return chain;
        },
        close: async () => {
          await chain;
        },
      };
    }
    case "raw": {
      const handle = await fs.open(path.join(dir, "log.jsonl"), "a", 0o600);
      return {
        one: async (i) => {
          await handle.write(`${JSON.stringify({ id: pick(ids, i), timestamp: Date.now(), output: `line ${i}`, type: "log" })}\n`);
          await handle.datasync();
        },
        close: () => handle.close(),
      };
    }
  }
}

/**
 * Loads of 10,000 tasks, medians of alternating runs: the driver's own `loadData()` in a fresh
 * instance (a fresh process's read: tasks.json, then the journal), beside `JSON.parse` of the same
 * file; `TaskManager.loadFromRepository()` (core's checks on top) and lowdb for reference; and
 * the driver with 1,000 journal records after tasks.json. The size of tasks.json after a
 * compaction, against plain `JSON.stringify` of the same store, is in the note.
 */
async function measureLoads(root: string, options: BenchOptions): Promise<BenchRow[]> {
  const size = 10_000;
  const runs = options.quick ? 5 : 15;
  const scenario = `load, ${size.toLocaleString("en-US")} tasks`;
  process.stderr.write(`bench: json-file: ${scenario}\n`);
  const dir = path.join(root, "load");
  mkdirSync(dir);
  const file = path.join(dir, "tasks.json");
  const data = makeData(size);
  await seed(file, data);
  // Compacted after real writes: 2,000 appends through the journal, then folded on close.
  const writer = new TaskManager(
    new EventBus(),
    new TaskRepository({ driver: new JSONFileStorageDriver({ path: file, compactOnCloseBytes: Number.MAX_SAFE_INTEGER }) }),
  );
  await writer.loadFromRepository();
  for (let i = 0; i < 2_000; i++) await writer.appendOutput(pick(data.tasks, i).id, `line ${i}`);
  await writer.close();
  const compacted = (await fs.stat(file)).size;
  const reader = new JSONFileStorageDriver(file);
  const plain = Buffer.byteLength(JSON.stringify(await reader.loadData()));
  await reader.close();

  const journaled = path.join(dir, "journaled.json");
  await fs.copyFile(file, journaled);
  const withJournal = new TaskManager(
    new EventBus(),
    new TaskRepository({ driver: new JSONFileStorageDriver({ path: journaled, compactOnCloseBytes: 0 }) }),
  );
  await withJournal.loadFromRepository();
  for (let i = 0; i < 1_000; i++) await withJournal.appendOutput(pick(data.tasks, i).id, `journaled line ${i}`);
  await withJournal.close();

  const lowdbFile = path.join(dir, "lowdb.json");
  await new Low<StorageData>(new JSONFile(lowdbFile), data).write();

  const time = (load: () => Promise<unknown>) => async () => {
    const t = performance.now();
    await load();
    return performance.now() - t;
  };
  const loadData = (at: string) => async () => {
    const driver = new JSONFileStorageDriver(at);
    await driver.loadData();
    await driver.close();
  };
  const [driverMs, parseMs, managerMs, lowdbMs, journaledMs] = await medians(runs, [
    time(loadData(file)),
    time(async () => JSON.parse(await fs.readFile(file, "utf8"))),
    time(async () => {
      const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver(file) }));
      await manager.loadFromRepository();
      await manager.close();
    }),
    time(() => new Low<StorageData>(new JSONFile(lowdbFile), data).read()),
    time(loadData(journaled)),
  ]);
  const row = (subject: string, ms: number, note?: string): BenchRow => ({
    scenario,
    subject,
    opsPerSec: round(1000 / ms),
    latencyMs: round(ms),
    ...(note ? { note } : {}),
  });
  return [
    row(
      "json-file driver loadData() (fresh instance)",
      driverMs as number,
      `${((driverMs as number) / (parseMs as number)).toFixed(2)}x JSON.parse's time; tasks.json after compaction ${compacted} bytes = ${(compacted / plain).toFixed(4)}x JSON.stringify (${plain})`,
    ),
    row("json-file driver loadData(), 1,000 journal records after tasks.json", journaledMs as number),
    row("TaskManager.loadFromRepository() (core validates)", managerMs as number),
    row("readFile + JSON.parse of the same tasks.json", parseMs as number),
    row(SUBJECT.lowdb, lowdbMs as number),
  ];
}

async function seed(file: string, data: StorageData): Promise<void> {
  const driver = new JSONFileStorageDriver(file);
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
