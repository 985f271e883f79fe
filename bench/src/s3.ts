import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { EventBus, type StoredTask, TaskManager, TaskRepository } from "@taskstore/core";
import { S3StorageDriver, type S3StorageDriverOptions } from "@taskstore/driver-s3";
import { type S3Server, startS3 } from "@taskstore/test-services";
import { medianOf, opsPerSec } from "./measure.js";
import type { BenchOptions, BenchRow, BenchSuite } from "./types.js";

/**
 * The S3 driver against Ceph radosgw on loopback (memstore OSD: the network and gateway cost,
 * not a disk's). Beside it, with the same client settings:
 * - "raw PutObject": one unconditional PUT of a body the size of one delta, the least any S3
 *   write can cost;
 * - "raw GET 404 + PutObject If-None-Match": exactly the round trips of one driver commit (probe
 *   for the next delta, then create it), so the ratio to it is the driver's own overhead;
 * - "naive: PUT the whole store": the seed's design moved to S3, rewriting one JSON object of all
 *   tasks per operation.
 * Load compares a fresh driver's loadData() with one GetObject of the same store as one JSON.
 */
export const run: BenchSuite = async (options: BenchOptions) => {
  const server = await startS3();
  try {
    return await suite(server, await server.createBucket(), options);
  } finally {
    await server.stop();
  }
};

async function suite(server: S3Server, bucket: string, options: BenchOptions): Promise<BenchRow[]> {
  const runs = options.quick ? 1 : 3;
  const ops = options.quick ? 40 : 150;
  const rounds = options.quick ? 3 : 8;
  const client = new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  const driverOptions = (prefix: string): S3StorageDriverOptions => ({
    bucket,
    prefix,
    endpoint: server.endpoint,
    region: server.region,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
  let storeNo = 0;
  const seeded = async (): Promise<{ manager: TaskManager; ids: string[]; prefix: string }> => {
    const prefix = `bench-${process.pid}-${storeNo++}/`;
    const repository = new TaskRepository({ driver: new S3StorageDriver(driverOptions(prefix)) });
    await repository.saveMany(Array.from({ length: 1_000 }, (_, i) => task(`seed-${i}`)));
    await repository.close();
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new S3StorageDriver(driverOptions(prefix)) }));
    await manager.loadFromRepository();
    return { manager, ids: manager.list().map((t) => t.id), prefix };
  };

  const rows: BenchRow[] = [];
  try {
    const deltaBody = JSON.stringify({ tx: crypto.randomUUID(), at: Date.now(), writes: { puts: [task("x")], logs: [], deletes: [] } });
    const wholeStore = JSON.stringify({
      version: "1.0.0",
      tasks: Array.from({ length: 1_000 }, (_, i) => task(`seed-${i}`)),
      metadata: {},
    });
    let key = 0;
    const rawPut = () => timeOps(ops, () => client.send(new PutObjectCommand({ Bucket: bucket, Key: `raw/${key++}`, Body: deltaBody })));
    const rawCommit = () =>
      timeOps(ops, async () => {
        const k = `raw/${key++}`;
        await client.send(new GetObjectCommand({ Bucket: bucket, Key: k })).catch(() => undefined);
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: k, Body: deltaBody, IfNoneMatch: "*" }));
      });
    const naive = () =>
      timeOps(Math.ceil(ops / 3), () => client.send(new PutObjectCommand({ Bucket: bucket, Key: "naive/tasks.json", Body: wholeStore })));

    const create = async () => {
      const { manager } = await seeded();
      try {
        let i = 0;
        return await timeOps(ops, () => manager.create({ title: `bench ${i++}` }));
      } finally {
        await manager.close();
      }
    };
    const append = async () => {
      const { manager, ids } = await seeded();
      try {
        let i = 0;
        return await timeOps(ops, () => manager.appendOutput(ids[i++ % ids.length] as string, `line ${i}`));
      } finally {
        await manager.close();
      }
    };
    const appendConcurrent = async () => {
      const { manager, ids } = await seeded();
      try {
        let i = 0;
        return await opsPerSec(rounds, 32, () => manager.appendOutput(ids[i++ % ids.length] as string, `line ${i}`));
      } finally {
        await manager.close();
      }
    };

    await rawPut(); // warm the gateway and the bucket index
    const put = await medianOf(runs, rawPut);
    const commit = await medianOf(runs, rawCommit);
    const whole = await medianOf(runs, naive);
    const created = await medianOf(runs, create);
    const appended = await medianOf(runs, append);
    const concurrent = await medianOf(runs, appendConcurrent);
    const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x of ${b.toFixed(0)} ops/s`;
    const row = (scenario: string, subject: string, opsPerSec: number, note?: string): BenchRow => ({
      scenario,
      subject,
      opsPerSec,
      latencyMs: 1000 / opsPerSec,
      ...(note ? { note } : {}),
    });
    rows.push(
      row("create, sequential, 1,000 tasks", "s3 driver (TaskManager)", created, `${ratio(created, commit)} (raw commit round trips)`),
    );
    rows.push(
      row(
        "appendOutput, sequential, 1,000 tasks",
        "s3 driver (TaskManager)",
        appended,
        `${ratio(appended, commit)} (raw commit round trips)`,
      ),
    );
    rows.push(row("appendOutput, 32 concurrent, 1,000 tasks", "s3 driver (TaskManager)", concurrent, "group commit: one delta per batch"));
    rows.push(row("one write", "raw PutObject (delta-sized body)", put));
    rows.push(row("one write", "raw GET 404 + PutObject If-None-Match", commit));
    rows.push(row("one write, 1,000 tasks", "naive: PUT the whole store as one object", whole));

    const loads = options.quick ? 3 : 7;
    const { manager, prefix } = await seeded();
    await manager.close();
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: "naive/tasks.json", Body: wholeStore }));
    const loadDriver = await medianOf(loads, async () => {
      const driver = new S3StorageDriver(driverOptions(prefix));
      await driver.initialize();
      const start = performance.now();
      const data = await driver.loadData();
      const ms = performance.now() - start;
      await driver.close();
      if (data.tasks.length !== 1_000) throw new Error(`bench: loaded ${data.tasks.length} tasks`);
      return 1000 / ms;
    });
    const loadRaw = await medianOf(loads, async () => {
      const start = performance.now();
      const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: "naive/tasks.json" }));
      JSON.parse((await out.Body?.transformToString()) ?? "");
      return 1000 / (performance.now() - start);
    });
    rows.push(row("load of 1,000 tasks", "s3 driver loadData() (fresh instance)", loadDriver, ratio(loadDriver, loadRaw)));
    rows.push(row("load of 1,000 tasks", "raw GetObject + JSON.parse of one object", loadRaw));
  } finally {
    client.destroy();
  }
  return rows;
}

function task(id: string): StoredTask {
  return {
    id,
    title: `Task ${id}`,
    status: "pending",
    progress: { percent: 0 },
    metadata: { bench: true },
    createdAt: 1,
    updatedAt: 1,
    children: [],
    logs: [],
  };
}

/** ops/s of `count` operations one after the other. */
function timeOps(count: number, op: () => Promise<unknown>): Promise<number> {
  return opsPerSec(count, 1, op);
}
