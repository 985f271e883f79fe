import { randomUUID } from "node:crypto";
import { EventBus, type StoredTask, TaskManager, TaskRepository } from "@taskstore/core";
import { RedisStorageDriver } from "@taskstore/driver-redis";
import { startRedis } from "@taskstore/test-services";
import { Redis } from "ioredis";
import { loadRows, medians, type PairPlan, type Subject, storeOf, versus } from "./measure.js";
import type { BenchOptions, BenchRow, BenchSuite } from "./types.js";

/**
 * The Redis driver, through TaskManager (validation, change sets, optimistic check, group
 * commit), against raw ioredis writing the same keys by hand: "minimal" with no concurrency
 * control (a create is MULTI { SET task, ZADD index }, an append is MULTI { SET task (updatedAt),
 * RPUSH log, LTRIM log }), and "the same commands", which adds what the driver's commit script
 * runs around those writes (see `same` below), so the ratio to it is the driver's own overhead.
 * All at the same durability: a server of the bench's own, no AOF. Each subject runs in a worker
 * thread of its own (see `paired()`).
 */
export const run: BenchSuite = async (options: BenchOptions) => {
  const runs = options.quick ? 1 : 5;
  const server = await startRedis({ dedicated: true });
  const raw = new Redis(server.url);
  const rows: BenchRow[] = [];
  const sequential: PairPlan = options.quick
    ? { warmup: 50, blocks: 2, rounds: 100, width: 1 }
    : { warmup: 5_000, blocks: 10, rounds: 300, width: 1 };
  const concurrent: PairPlan = options.quick
    ? { warmup: 50, blocks: 2, rounds: 5, width: 32 }
    : { warmup: 5_000, blocks: 10, rounds: 10, width: 32 };
  try {
    const scenarios: [string, "create" | "append", PairPlan][] = [
      ["create, sequential, 1,000 tasks", "create", sequential],
      ["appendOutput, sequential, 1,000 tasks", "append", sequential],
      ["appendOutput, 32 concurrent, 1,000 tasks", "append", concurrent],
    ];
    for (const [scenario, op, plan] of scenarios) {
      const spec = (kind: "driver" | "raw" | "same") => ({ module: import.meta.url, open: "openSubject", args: [server.url, kind, op] });
      const { driver, same, minimal, note } = await versus(spec("driver"), spec("same"), spec("raw"), plan);
      rows.push({ scenario, subject: "redis driver (TaskManager)", opsPerSec: driver, note });
      rows.push({ scenario, subject: "raw ioredis, the same commands", opsPerSec: same });
      rows.push({ scenario, subject: "raw ioredis, minimal MULTI", opsPerSec: minimal });
    }
    const scenario = "load of 1,000 tasks (5 log entries each)";
    const [loadData, manager, direct] = (await medians(runs, [
      () => measureLoad(server.url, raw, "loadData"),
      () => measureLoad(server.url, raw, "manager"),
      () => measureLoad(server.url, raw, "raw"),
    ])) as [number, number, number];
    rows.push(...loadRows(scenario, "redis driver", "raw ioredis (pipeline + JSON.parse)", [loadData, manager, direct]));
  } finally {
    raw.disconnect();
    await server.stop();
  }
  return rows;
};

/** One side of a write scenario, on a store of its own seeded with 1,000 tasks (run in a worker: see `paired()`). */
export async function openSubject(url: string, kind: "driver" | "raw" | "same", op: "create" | "append"): Promise<Subject> {
  const raw = new Redis(url);
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  const seed = seedTasks(1_000);
  const seeder = new RedisStorageDriver({ url, prefix });
  await seeder.initialize();
  await seeder.saveData(storeOf(seed));
  await seeder.close();
  const pick = (i: number) => seed[(i * 7919) % seed.length] as StoredTask;
  if (kind === "driver") {
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new RedisStorageDriver({ url, prefix }) }));
    await manager.loadFromRepository();
    return {
      one: (i) => (op === "create" ? manager.create({ title: `bench ${i}` }) : manager.appendOutput(pick(i).id, `line ${i}`)),
      close: async () => {
        await manager.close();
        await deletePrefix(raw, prefix);
        raw.disconnect();
      },
    };
  }
  // Task bodies without their logs, made once: a hand-written client would keep them so.
  const bodies = seed.map(({ logs: _logs, ...body }) => body);
  const tag = `{${prefix}}:main:`;
  const store = `{${prefix}}:`;
  let seq = seed.length;
  /**
   * The commands the driver's commit script runs, sent in one MULTI without its conditions (a
   * client cannot branch inside MULTI): the lock, the commit marker, the task's JSON and log
   * length, the version, the index, the meta hash, the commit counter, the marker, and the two
   * subscriber counts (nobody else listens here, so nothing is published). The caller adds the
   * writes of its operation.
   */
  const same = (id: string, json: string) =>
    raw
      .multi()
      .get(`${store}lock`)
      .exists(`${store}tx:${randomUUID()}`)
      .get(`${tag}t:${id}`)
      .llen(`${tag}l:${id}`)
      .hget(`${tag}meta`, "version")
      .set(`${tag}t:${id}`, json)
      .zscore(`${tag}ids`, id)
      .hset(`${tag}meta`, "version", "1.0.0", "lastUpdated", String(Date.now()))
      .incr(`${store}rev`)
      .set(`${store}tx:${randomUUID()}`, "1", "PX", 600_000)
      .pubsub("NUMSUB", `${store}changes`)
      .pubsub("NUMSUB", `${store}changes:${id}`);
  return {
    one: async (i) => {
      const now = Date.now();
      if (op === "create") {
        const id = randomUUID();
        const task = {
          id,
          title: `bench ${i}`,
          status: "pending",
          progress: { percent: 0 },
          metadata: {},
          createdAt: now,
          updatedAt: now,
          children: [],
        };
        const json = JSON.stringify(task);
        await (kind === "raw" ? raw.multi().set(`${tag}t:${id}`, json) : same(id, json)).zadd(`${tag}ids`, ++seq, id).exec();
      } else {
        const body = Object.assign({}, bodies[(i * 7919) % bodies.length]);
        body.updatedAt = now;
        const json = JSON.stringify(body);
        const entry = JSON.stringify({ timestamp: now, output: `line ${i}`, type: "log" });
        await (kind === "raw" ? raw.multi().set(`${tag}t:${body.id}`, json) : same(body.id, json))
          .rpush(`${tag}l:${body.id}`, entry)
          .ltrim(`${tag}l:${body.id}`, -10_000, -1)
          .exec();
      }
    },
    close: async () => {
      await deletePrefix(raw, prefix);
      raw.disconnect();
    },
  };
}

async function measureLoad(url: string, raw: Redis, kind: "loadData" | "manager" | "raw"): Promise<number> {
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  const seed = seedTasks(1_000);
  const driver = new RedisStorageDriver({ url, prefix });
  await driver.initialize();
  await driver.saveData(storeOf(seed));
  // Both sides connected and initialized before the clock, as the driver is for loadData().
  const repository = kind === "manager" ? new TaskRepository({ driver: new RedisStorageDriver({ url, prefix }) }) : undefined;
  await repository?.initialize();
  let elapsed = 0;
  const start = performance.now();
  if (kind === "loadData") {
    await driver.loadData();
  } else if (repository) {
    const manager = new TaskManager(new EventBus(), repository);
    await manager.loadFromRepository();
    elapsed = performance.now() - start;
    await manager.close();
  } else {
    const tag = `{${prefix}}:main:`;
    const ids = await raw.zrange(`${tag}ids`, 0, -1);
    const pipeline = raw.pipeline();
    for (const id of ids) pipeline.get(`${tag}t:${id}`).lrange(`${tag}l:${id}`, 0, -1);
    const replies = (await pipeline.exec()) ?? [];
    ids.map((_, i) => ({
      ...JSON.parse(replies[2 * i]?.[1] as string),
      logs: ((replies[2 * i + 1]?.[1] ?? []) as string[]).map((entry) => JSON.parse(entry)),
    }));
  }
  elapsed ||= performance.now() - start;
  await driver.close();
  await deletePrefix(raw, prefix);
  return 1000 / elapsed;
}

async function deletePrefix(raw: Redis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await raw.scan(cursor, "MATCH", `{${prefix}}:*`, "COUNT", 1_000);
    cursor = next;
    if (keys.length > 0) await raw.unlink(...keys);
  } while (cursor !== "0");
}

function seedTasks(count: number): StoredTask[] {
  const now = Date.now();
  return Array.from({ length: count }, (_, i) => ({
    id: `seed-${String(i).padStart(6, "0")}`,
    title: `seeded task ${i}`,
    description: "a task that was there before the benchmark started",
    status: "running" as const,
    progress: { percent: i % 100, message: "working" },
    metadata: { index: i, tags: ["bench"] },
    createdAt: now,
    updatedAt: now,
    children: [],
    logs: Array.from({ length: 5 }, (_, n) => ({ timestamp: now, output: `seed line ${n}`, type: "log" as const })),
  }));
}
