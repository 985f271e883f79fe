import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { IncrementalBackups, type SealingOptions, TaskRepository } from "@taskstore/core";
import { JSONFileStorageDriver } from "@taskstore/driver-json-file";
import { median, seedTasks } from "./measure.js";
import type { BenchOptions, BenchRow, BenchSuite } from "./types.js";

/**
 * What an incremental backup costs beside a full one: a JSON file store of 10,000 tasks (2 log
 * entries each), then 10 appendOutput-sized changes to 10 tasks, then a backup. Side by side: the
 * driver's own full backup (`repository.backup()`, tasks.backup.json), the chain's first point (a
 * base, the whole store), and the incremental point after the 10 changes, made by the instance
 * that made the base (it diffs against its copy of the last point) and by a fresh one (as the CLI
 * does: it reads the chain's base and points first), plain and encrypted. Time and bytes written.
 */

const TASKS = 10_000;
const CHANGES = 10;
const KEY = randomBytes(32).toString("base64");

interface Sample {
  fullMs: number;
  fullBytes: number;
  baseMs: number;
  baseBytes: number;
  warmMs: number;
  coldMs: number;
  deltaBytes: number;
  /** The chain's manifest, which every point rewrites (here with 2-3 points listed). */
  manifestBytes: number;
}

export const run: BenchSuite = async (options: BenchOptions) => {
  const runs = options.quick ? 3 : 7;
  const rows: BenchRow[] = [];
  for (const sealing of [undefined, { keys: [KEY] }] as (SealingOptions | undefined)[]) {
    await sample(sealing); // untimed: module loading and JIT
    const samples: Sample[] = [];
    for (let i = 0; i < runs; i++) samples.push(await sample(sealing));
    const m = (pick: (s: Sample) => number) => median(samples.map(pick));
    const mode = sealing ? "encrypted" : "plain";
    const scenario = `backup of a ${TASKS.toLocaleString("en")}-task json-file store after ${CHANGES} changes, ${mode}`;
    const full = m((s) => s.fullMs);
    const fullBytes = m((s) => s.fullBytes);
    const line = (subject: string, ms: number, bytes: number): BenchRow => ({
      scenario,
      subject,
      opsPerSec: 1000 / ms,
      latencyMs: ms,
      note: `${bytes.toLocaleString("en")} bytes written (${(bytes / fullBytes).toFixed(4)}x the full backup's), ${(ms / full).toFixed(2)}x its time`,
    });
    const delta = m((s) => s.deltaBytes + s.manifestBytes);
    rows.push(line("full backup: repository.backup() (tasks.backup.json)", full, fullBytes));
    rows.push(
      line(
        "incremental chain: first point (a base)",
        m((s) => s.baseMs),
        m((s) => s.baseBytes),
      ),
    );
    rows.push(
      line(
        `incremental point after ${CHANGES} changes, same instance (point + manifest)`,
        m((s) => s.warmMs),
        delta,
      ),
    );
    rows.push(
      line(
        `incremental point after ${CHANGES} changes, fresh instance as the CLI (point + manifest)`,
        m((s) => s.coldMs),
        delta,
      ),
    );
  }
  return rows;
};

async function sample(sealing: SealingOptions | undefined): Promise<Sample> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "taskstore-bench-backups-"));
  try {
    const file = path.join(dir, "tasks.json");
    const chain = path.join(dir, "chain");
    const open = () => new TaskRepository({ driver: new JSONFileStorageDriver({ path: file }), ...(sealing ? { sealing } : {}) });
    const repository = open();
    const seeded = seedTasks(TASKS, 2);
    await repository.saveMany(seeded);
    await repository.loadAll();

    let start = performance.now();
    await repository.backup();
    const fullMs = performance.now() - start;
    const fullBytes = (await stat(path.join(dir, "tasks.backup.json"))).size;

    const backups = new IncrementalBackups(repository, { dir: chain });
    start = performance.now();
    const base = await backups.backup();
    const baseMs = performance.now() - start;

    const change = async (round: number) => {
      for (let i = 0; i < CHANGES; i++) {
        const id = seeded[(i * 997 + round) % TASKS]?.id as string;
        await repository.apply([
          {
            type: "append",
            id,
            at: Date.now(),
            entries: [{ timestamp: Date.now(), type: "stdout", output: `round ${round}: compiled module ${i}` }],
          },
        ]);
      }
    };
    await change(1);
    start = performance.now();
    const warm = await backups.backup();
    const warmMs = performance.now() - start;
    const manifests = (await readdir(chain)).filter((name) => name.startsWith("manifest-")).sort();
    const manifestBytes = (await stat(path.join(chain, manifests.at(-1) as string))).size;

    await change(2);
    const fresh = open();
    start = performance.now();
    await new IncrementalBackups(fresh, { dir: chain }).backup();
    const coldMs = performance.now() - start;
    await fresh.close();
    await repository.close();
    return { fullMs, fullBytes, baseMs, baseBytes: base.point.bytes, warmMs, coldMs, deltaBytes: warm.point.bytes, manifestBytes };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
