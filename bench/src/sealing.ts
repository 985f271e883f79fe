import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EventBus, type SealingOptions, type StorageDriver, type StoredTask, TaskManager, TaskRepository } from "@taskstore/core";
import { JSONFileStorageDriver } from "@taskstore/driver-json-file";
import { PostgresStorageDriver } from "@taskstore/driver-postgres";
import { RedisStorageDriver } from "@taskstore/driver-redis";
import { startPostgres, startRedis } from "@taskstore/test-services";
import { medianOf, type PairPlan, paired, type Subject, seedTasks } from "./measure.js";
import type { BenchOptions, BenchRow, BenchSuite } from "./types.js";

/**
 * What encryption at rest and compression cost: an awaited appendOutput on the server drivers
 * (Redis, PostgreSQL), plain against encrypted and against encrypted + compressed, each pair side
 * by side in worker threads (see `paired()`); a load of 10,000 tasks through TaskManager, plain and
 * sealed, on the JSON file driver; and the size of a store of typical build logs, plain and
 * compressed. Target (issue 18): encryption at most 1.2x per write on the server drivers.
 */

type Mode = "plain" | "encrypted" | "encrypted+compressed" | "compressed";
const KEY = randomBytes(32).toString("base64");

function sealing(mode: Mode): SealingOptions | undefined {
  if (mode === "plain") return undefined;
  if (mode === "compressed") return { compress: true };
  return { keys: [KEY], compress: mode === "encrypted+compressed" };
}

export const run: BenchSuite = async (options: BenchOptions) => {
  const rows: BenchRow[] = [];
  const plan: PairPlan = options.quick
    ? { warmup: 50, blocks: 2, rounds: 100, width: 1 }
    : // Long blocks: an append costs ~0.2 ms on Redis and sealing adds tens of us, so blocks of
      // 300 (60 ms) let one pause of the VM decide a ratio (1.16x to 1.41x from run to run).
      { warmup: 2_000, blocks: 12, rounds: 1_500, width: 1 };
  const redis = await startRedis({ dedicated: true });
  const postgres = await startPostgres({ fsync: true });
  try {
    for (const [driver, url] of [
      ["redis", redis.url],
      ["postgres", postgres.url],
    ] as const) {
      const scenario = `appendOutput, sequential, 1,000 tasks, ${driver}`;
      const spec = (mode: Mode) => ({ module: import.meta.url, open: "openSubject", args: [driver, url, mode] });
      const [plainA, encrypted] = (await paired([spec("plain"), spec("encrypted")], plan)) as [number, number];
      const [plainB, both] = (await paired([spec("plain"), spec("encrypted+compressed")], plan)) as [number, number];
      rows.push({ scenario, subject: `${driver} driver, plain`, opsPerSec: (plainA + plainB) / 2 });
      rows.push({
        scenario,
        subject: `${driver} driver, encrypted`,
        opsPerSec: encrypted,
        note: `${(plainA / encrypted).toFixed(2)}x plain's time`,
      });
      rows.push({
        scenario,
        subject: `${driver} driver, encrypted + compressed`,
        opsPerSec: both,
        note: `${(plainB / both).toFixed(2)}x plain's time`,
      });
    }
  } finally {
    await redis.stop();
    await postgres.stop();
  }

  const runs = options.quick ? 3 : 7;
  const scenario = "load of 10,000 tasks (5 log entries each), json-file, TaskManager";
  const loads: [Mode, number][] = [];
  for (const mode of ["plain", "encrypted", "encrypted+compressed"] as const)
    loads.push([mode, await medianOf(runs, () => measureLoad(mode))]);
  const plainLoad = loads[0]?.[1] as number;
  for (const [mode, rate] of loads) {
    rows.push({
      scenario,
      subject: `json-file, ${mode}`,
      opsPerSec: rate,
      latencyMs: 1000 / rate,
      note: mode === "plain" ? "" : `${(plainLoad / rate).toFixed(2)}x plain's time`,
    });
  }

  const sizeScenario = "store of 1,000 tasks x 20 lines of typical build output, json-file (bytes)";
  const sizes: [Mode, number][] = [];
  for (const mode of ["plain", "compressed", "encrypted+compressed"] as const) sizes.push([mode, await storeSize(mode)]);
  const plainSize = sizes[0]?.[1] as number;
  for (const [mode, bytes] of sizes) {
    rows.push({
      scenario: sizeScenario,
      subject: `json-file, ${mode}`,
      opsPerSec: bytes,
      note: `${(bytes / plainSize).toFixed(2)}x plain's size (the ops/s column is bytes here)`,
    });
  }
  return rows;
};

/** One side of an append scenario, on a store of its own seeded with 1,000 tasks (run in a worker: see `paired()`). */
export async function openSubject(driver: "redis" | "postgres", url: string, mode: Mode): Promise<Subject> {
  const name = `bench_${randomUUID().slice(0, 8)}`;
  const open = (): StorageDriver =>
    driver === "redis" ? new RedisStorageDriver({ url, prefix: name }) : new PostgresStorageDriver({ connectionString: url, schema: name });
  const seed = seedTasks(1_000);
  const seeder = new TaskRepository({ driver: open(), ...(sealing(mode) ? { sealing: sealing(mode) } : {}) });
  await seeder.saveMany(seed);
  await seeder.close();
  const manager = new TaskManager(
    new EventBus(),
    new TaskRepository({ driver: open(), ...(sealing(mode) ? { sealing: sealing(mode) } : {}) }),
  );
  await manager.loadFromRepository();
  const pick = (i: number) => seed[(i * 7919) % seed.length] as StoredTask;
  return {
    one: (i) => manager.appendOutput(pick(i).id, `line ${i}: compiling src/module-${i % 50}.ts`),
    close: () => manager.close(),
  };
}

async function measureLoad(mode: Mode): Promise<number> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "taskstore-bench-seal-"));
  try {
    const file = path.join(dir, "tasks.json");
    const writer = new TaskRepository({
      driver: new JSONFileStorageDriver({ path: file }),
      ...(sealing(mode) ? { sealing: sealing(mode) } : {}),
    });
    await writer.saveMany(seedTasks(10_000, 5));
    await writer.close();
    const start = performance.now();
    const manager = new TaskManager(
      new EventBus(),
      new TaskRepository({ driver: new JSONFileStorageDriver({ path: file }), ...(sealing(mode) ? { sealing: sealing(mode) } : {}) }),
    );
    await manager.loadFromRepository();
    const ms = performance.now() - start;
    await manager.close();
    return 1000 / ms;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Typical build output: repetitive lines with changing numbers and paths. */
function buildLog(task: number): StoredTask["logs"] {
  return Array.from({ length: 20 }, (_, n) => ({
    timestamp: 1_700_000_000_000 + task * 100 + n,
    output:
      n % 5 === 4
        ? `src/components/widget-${task % 40}.tsx(${n * 7},${n + 3}): warning TS6133: 'props' is declared but its value is never read.`
        : `[${String(n).padStart(2, "0")}:${String(task % 60).padStart(2, "0")}] compiled packages/app/src/module-${(task * 3 + n) % 120}.ts in ${(n * 13) % 97} ms (${(task + n) % 9} warnings)`,
    type: n % 5 === 4 ? ("stderr" as const) : ("stdout" as const),
    source: "tsc",
  }));
}

async function storeSize(mode: Mode): Promise<number> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "taskstore-bench-size-"));
  try {
    const file = path.join(dir, "tasks.json");
    const tasks = seedTasks(1_000, 0).map((task, i) => ({ ...task, logs: buildLog(i) }));
    // Each task's log is one value: the whole output of its build, as `taskstore run` records it in batches.
    const joined = tasks.map((task) => ({
      ...task,
      logs: [{ ...task.logs[0], output: task.logs.map((l) => l.output).join("\n") }] as StoredTask["logs"],
    }));
    const writer = new TaskRepository({
      driver: new JSONFileStorageDriver({ path: file }),
      ...(sealing(mode) ? { sealing: sealing(mode) } : {}),
    });
    await writer.saveMany(joined);
    await writer.close();
    let bytes = 0;
    for (const name of await readdir(dir)) bytes += (await stat(path.join(dir, name))).size;
    return bytes;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
