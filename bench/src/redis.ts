import { randomUUID } from "node:crypto";
import { EventBus, type StoredTask, TaskManager, TaskRepository } from "@taskstore/core";
import { RedisStorageDriver } from "@taskstore/driver-redis";
import { startRedis } from "@taskstore/test-services";
import { Redis } from "ioredis";
import { loadRows, medians, overhead, storeOf, timed } from "./measure.js";
import type { BenchOptions, BenchRow, BenchSuite } from "./types.js";

/**
 * The Redis driver, through TaskManager (validation, change sets, optimistic check, group
 * commit), against raw ioredis writing the same keys by hand with no concurrency control: a
 * create is MULTI { SET task, ZADD index }, an append is MULTI { SET task (updatedAt),
 * RPUSH log, LTRIM log }. Both at the same durability: a server of the bench's own, no AOF.
 */
export const run: BenchSuite = async (options: BenchOptions) => {
  const runs = options.quick ? 1 : 5;
  const sequential = options.quick ? 100 : 500;
  const rounds = options.quick ? 5 : 20; // of 32 concurrent operations
  const server = await startRedis({ dedicated: true });
  const raw = new Redis(server.url);
  const rows: BenchRow[] = [];
  try {
    const scenarios: [string, (kind: "driver" | "raw") => Promise<number>][] = [
      ["create, sequential, 1,000 tasks", (kind) => measureWrites(server.url, raw, kind, "create", sequential, 1)],
      ["appendOutput, sequential, 1,000 tasks", (kind) => measureWrites(server.url, raw, kind, "append", sequential, 1)],
      ["appendOutput, 32 concurrent, 1,000 tasks", (kind) => measureWrites(server.url, raw, kind, "append", rounds, 32)],
    ];
    for (const [scenario, bench] of scenarios) {
      const [driver, direct] = (await medians(runs, [() => bench("driver"), () => bench("raw")])) as [number, number];
      rows.push({ scenario, subject: "redis driver (TaskManager)", opsPerSec: driver, note: overhead(driver, direct) });
      rows.push({ scenario, subject: "raw ioredis", opsPerSec: direct });
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

async function measureWrites(
  url: string,
  raw: Redis,
  kind: "driver" | "raw",
  op: "create" | "append",
  rounds: number,
  width: number,
): Promise<number> {
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  const seed = seedTasks(1_000);
  const seeder = new RedisStorageDriver({ url, prefix });
  await seeder.initialize();
  await seeder.saveData(storeOf(seed));
  await seeder.close();
  const pick = (i: number) => (seed[(i * 7919) % seed.length] as StoredTask).id;
  let elapsed: number;
  if (kind === "driver") {
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new RedisStorageDriver({ url, prefix }) }));
    await manager.loadFromRepository();
    const one = (i: number) => (op === "create" ? manager.create({ title: `bench ${i}` }) : manager.appendOutput(pick(i), `line ${i}`));
    elapsed = await timed(rounds, width, one);
    await manager.close();
  } else {
    const tag = `{${prefix}}:main:`;
    let seq = seed.length;
    const one = async (i: number) => {
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
        await raw.multi().set(`${tag}t:${id}`, JSON.stringify(task)).zadd(`${tag}ids`, ++seq, id).exec();
      } else {
        const { logs: _logs, ...body } = seed[(i * 7919) % seed.length] as StoredTask;
        const entry = JSON.stringify({ timestamp: now, output: `line ${i}`, type: "log" });
        await raw
          .multi()
          .set(`${tag}t:${body.id}`, JSON.stringify({ ...body, updatedAt: now }))
          .rpush(`${tag}l:${body.id}`, entry)
          .ltrim(`${tag}l:${body.id}`, -10_000, -1)
          .exec();
      }
    };
    elapsed = await timed(rounds, width, one);
  }
  await deletePrefix(raw, prefix);
  return (rounds * width * 1000) / elapsed;
}

async function measureLoad(url: string, raw: Redis, kind: "loadData" | "manager" | "raw"): Promise<number> {
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  const seed = seedTasks(1_000);
  const driver = new RedisStorageDriver({ url, prefix });
  await driver.initialize();
  await driver.saveData(storeOf(seed));
  const start = performance.now();
  if (kind === "loadData") {
    await driver.loadData();
  } else if (kind === "manager") {
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new RedisStorageDriver({ url, prefix }) }));
    await manager.loadFromRepository();
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
  const elapsed = performance.now() - start;
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
