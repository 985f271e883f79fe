import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import v8 from "node:v8";
import { runInNewContext } from "node:vm";
import { Worker } from "node:worker_threads";
import type { StorageData, StoredTask } from "@taskstore/core";
import type { BenchRow } from "./types.js";

/** The middle value (the upper middle of an even count); 0 for none. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/**
 * Runs each bench `runs` times, alternating (a slow spell of the machine hits all alike); returns
 * each one's median. Each bench runs once first, untimed, as the write scenarios are warmed up:
 * a first run in the process pays for loading modules and JIT, and with one timed run (`--quick`)
 * that alone made `loadFromRepository()` look 3.5x its driver's `loadData()`.
 */
export async function medians(runs: number, benches: (() => Promise<number>)[]): Promise<number[]> {
  for (const bench of benches) await bench();
  const results: number[][] = benches.map(() => []);
  for (let i = 0; i < runs; i++) {
    for (const [k, bench] of benches.entries()) {
      // Each run starts on a collected heap: the garbage of the run before (10,000 tasks just
      // loaded and dropped) is not collected in this one's time.
      collectGarbage();
      results[k]?.push(await bench());
    }
  }
  return results.map(median);
}

/** A full garbage collection (V8's `gc()`, exposed at run time so `node` needs no flag). */
const collectGarbage: () => void = (() => {
  v8.setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
})();

/** The median of `runs` runs of one bench. */
export async function medianOf(runs: number, bench: () => Promise<number>): Promise<number> {
  return (await medians(runs, [bench]))[0] as number;
}

/** A bench that runs in a fresh temporary folder, deleted afterwards. */
export function inTempDir(prefix: string, bench: (dir: string) => Promise<number>): () => Promise<number> {
  return async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
    try {
      return await bench(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

/** `rounds` rounds of `width` operations started together (`one(i)`, i counting from 0); returns the elapsed ms. */
export async function timed(rounds: number, width: number, one: (i: number) => Promise<unknown>): Promise<number> {
  const start = performance.now();
  for (let r = 0; r < rounds; r++) await Promise.all(Array.from({ length: width }, (_, k) => one(r * width + k)));
  return performance.now() - start;
}

/** One side of a paired measurement: `one(i)` does operation `i`. */
export interface Subject {
  one(i: number): Promise<unknown>;
  close(): Promise<void>;
}

/** Where a worker finds a subject: `(await import(module))[open](...args)` returns it. */
export interface SubjectSpec {
  /** A module URL (`import.meta.url` of the suite). */
  module: string;
  /** The name of the exported function that opens the subject. */
  open: string;
  /** Its arguments: plain data, since they cross to a worker thread. */
  args: unknown[];
}

/** How a paired measurement runs: see `paired()`. */
export interface PairPlan {
  /** Operations each subject does before any clock starts (JIT, statement caches, connections). */
  warmup: number;
  /** Timed blocks per subject. */
  blocks: number;
  /** Rounds of `width` operations started together, per block. */
  rounds: number;
  width: number;
}

/**
 * Operations per second of each subject, measured side by side. Each subject runs in a worker
 * thread of its own: in one isolate, the raw client's calls would tune the client library's
 * shared code for the raw client's shapes and slow the driver's (or the other way round), which
 * no real program sees. Every subject is opened and warmed up first; then they take turns, block
 * by block, one at a time, so that a slow spell of a shared machine (the other core busy, a slow
 * fsync) hits every subject alike instead of whichever happened to run then. Each subject's rate
 * is the median of its blocks' rates, so a block that a slow spell hit alone does not move it;
 * `BENCH_BLOCKS=1` prints every block's rate. Operation indexes count on across blocks (warm-up
 * ones start at 1e9), so creates stay unique.
 */
export async function paired(specs: SubjectSpec[], plan: PairPlan): Promise<number[]> {
  const workers: { worker: Worker; ask: (message: object) => Promise<Record<string, unknown>> }[] = [];
  try {
    for (const spec of specs) {
      const worker = new Worker(new URL("./subject-worker.js", import.meta.url), { workerData: spec });
      const replies: ((reply: Record<string, unknown>) => void)[] = [];
      let failed: Error | undefined;
      worker.on("message", (reply: Record<string, unknown>) => replies.shift()?.(reply));
      worker.on("error", (error) => {
        failed = error;
        for (const waiting of replies.splice(0)) waiting({ error: error.stack ?? String(error) });
      });
      const next = () =>
        new Promise<Record<string, unknown>>((resolve, reject) => {
          if (failed) reject(failed);
          else replies.push((reply) => (reply.error ? reject(new Error(String(reply.error))) : resolve(reply)));
        });
      const ready = next();
      workers.push({
        worker,
        ask: (message) => {
          const reply = next();
          worker.postMessage(message);
          return reply;
        },
      });
      await ready;
    }
    for (const { ask } of workers) await ask({ type: "warmup", count: plan.warmup });
    const rates: number[][] = workers.map(() => []);
    const perBlock = plan.rounds * plan.width;
    for (let block = 0; block < plan.blocks; block++) {
      for (const [k, { ask }] of workers.entries()) {
        const { ms } = await ask({ type: "block", from: block * perBlock, rounds: plan.rounds, width: plan.width });
        rates[k]?.push((perBlock * 1000) / (ms as number));
      }
    }
    if (process.env.BENCH_BLOCKS) console.error(rates.map((r) => r.map((v) => Math.round(v)).join(" ")).join("\n"));
    return rates.map(median);
  } finally {
    for (const { worker, ask } of workers) {
      await ask({ type: "close" }).catch(() => undefined);
      await worker.terminate();
    }
  }
}

/**
 * A driver against raw doing the same work and raw minimal, as two pairs (driver with each), so
 * that neither raw subject shares the machine's turns with the other: in one three-way run the
 * driver measured up to 20% slower than in either pair. The driver's rate is the mean of its two;
 * the note gives each ratio from its own pair.
 */
export async function versus(
  driver: SubjectSpec,
  same: SubjectSpec,
  minimal: SubjectSpec,
  plan: PairPlan,
): Promise<{ driver: number; same: number; minimal: number; note: string }> {
  const [driverA, sameRate] = (await paired([driver, same], plan)) as [number, number];
  const [driverB, minimalRate] = (await paired([driver, minimal], plan)) as [number, number];
  const note = `${(sameRate / driverA).toFixed(2)}x raw doing the same work; ${(minimalRate / driverB).toFixed(2)}x raw minimal`;
  return { driver: (driverA + driverB) / 2, same: sameRate, minimal: minimalRate, note };
}

/** Operations per second of `rounds` rounds of `width` operations started together. */
export async function opsPerSec(rounds: number, width: number, one: (i: number) => Promise<unknown>): Promise<number> {
  return (rounds * width * 1000) / (await timed(rounds, width, one));
}

/** The note of a driver row: how many times faster the raw subject is. */
export function overhead(driver: number, raw: number): string {
  return `overhead ${(raw / driver).toFixed(2)}x raw`;
}

/**
 * A store's worth of tasks that were there before the benchmark started: ids `seed-000000`...,
 * each with `logs` entries ("seeded output i", then "second line"s).
 */
export function seedTasks(count: number, logs = 1): StoredTask[] {
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
    logs: Array.from({ length: logs }, (_, n) =>
      n === 0
        ? { timestamp: now + i, output: `seeded output ${i}`, type: "log" as const }
        : { timestamp: now + i + 1, output: "second line", type: "stdout" as const },
    ),
  }));
}

/** A whole store of `tasks`, as saveData() takes it. */
export function storeOf(tasks: StoredTask[]): StorageData {
  return { version: "1.0.0", tasks, metadata: { lastUpdated: Date.now(), totalTasks: tasks.length } };
}

/** The body (no logs) of a task a raw client creates as operation `i`, as the drivers store it. */
export function rawTaskBody(
  i: number,
): { id: string; title: string; status: string; progress: { percent: number } } & Record<string, unknown> {
  const now = Date.now();
  return {
    id: `raw-${String(i).padStart(8, "0")}`,
    title: `bench ${i}`,
    status: "pending",
    progress: { percent: 0 },
    metadata: { i },
    createdAt: now,
    updatedAt: now,
    children: [],
  };
}

/** The three rows of a load scenario: the driver's loadData() (with its overhead), TaskManager, and the raw client. */
export function loadRows(scenario: string, driver: string, raw: string, [loadData, manager, direct]: [number, number, number]): BenchRow[] {
  return [
    { scenario, subject: `${driver} loadData()`, opsPerSec: loadData, latencyMs: 1000 / loadData, note: overhead(loadData, direct) },
    {
      scenario,
      subject: "TaskManager.loadFromRepository() (validates)",
      opsPerSec: manager,
      latencyMs: 1000 / manager,
      note: `${(loadData / manager).toFixed(2)}x loadData()'s time`,
    },
    { scenario, subject: raw, opsPerSec: direct, latencyMs: 1000 / direct },
  ];
}
