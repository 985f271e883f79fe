import { GetObjectCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { makeLogs, makeTask } from "@taskstore/conformance";
import { EventBus, type StorageData, TaskManager, TaskRepository, TaskStoreError } from "@taskstore/core";
import { S3StorageDriver, type S3StorageDriverOptions } from "@taskstore/driver-s3";
import { type S3Server, startS3 } from "@taskstore/test-services";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { driverOptions, listKeys, rawClient, uniquePrefix } from "./helpers.js";

let server: S3Server;
let bucket: string;
let raw: S3Client;
const open: (S3StorageDriver | TaskRepository)[] = [];

beforeAll(async () => {
  server = await startS3();
  bucket = await server.createBucket();
  raw = rawClient(server);
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((item) => item.close().catch(() => undefined)));
});
afterAll(async () => {
  raw?.destroy();
  await server?.stop();
});

function driver(prefix: string, extra: Partial<S3StorageDriverOptions> = {}): S3StorageDriver {
  const made = new S3StorageDriver({ ...driverOptions(server, bucket, prefix), ...extra });
  open.push(made);
  return made;
}

function repository(prefix: string, extra: Partial<S3StorageDriverOptions> = {}): TaskRepository {
  const made = new TaskRepository({ driver: driver(prefix, extra) });
  open.push(made);
  return made;
}

async function readJson(key: string): Promise<{ body: Record<string, unknown>; etag: string; size: number }> {
  const out = await raw.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const text = (await out.Body?.transformToString()) ?? "";
  return { body: JSON.parse(text), etag: out.ETag ?? "", size: text.length };
}

describe("initialize()", () => {
  it("finds that radosgw matches only the unquoted ETag in If-Match and uses it", async () => {
    const d = driver(uniquePrefix());
    await d.initialize();
    expect((await d.describe()).etagQuoting).toBe(server.kind === "radosgw" ? "unquoted" : "standard");
  });

  it("refuses a forced etagQuoting the server does not accept, never dropping the condition", async () => {
    const wrong = server.kind === "radosgw" ? "standard" : "unquoted";
    const d = driver(uniquePrefix(), { etagQuoting: wrong });
    if (server.kind === "radosgw") {
      await expect(d.initialize()).rejects.toThrow(/refused If-Match with the object's own ETag/);
    } else {
      await d.initialize();
    }
  });
});

describe("object layout", () => {
  it("an append writes one small delta object and rewrites neither the base nor the log", async () => {
    const prefix = uniquePrefix();
    const repo = repository(prefix);
    await repo.save(makeTask({ id: "big", logs: makeLogs(3_000) }));
    const manager = new TaskManager(new EventBus(), repository(prefix));
    await manager.loadFromRepository();
    const before = new Map((await listKeys(raw, bucket, prefix)).map((key) => [key, true]));
    const baseKeys = [...before.keys()].filter((key) => key.endsWith("base.json"));
    const baseBefore = await Promise.all(baseKeys.map((key) => readJson(key)));
    await manager.appendOutput("big", "one more line");
    const added = (await listKeys(raw, bucket, prefix)).filter((key) => !before.has(key));
    expect(added).toHaveLength(1);
    expect(added[0]).toMatch(/epochs\/[^/]+\/d\/\d{12}\.json$/);
    const delta = await readJson(added[0] as string);
    expect(delta.size).toBeLessThan(600);
    expect(JSON.stringify(delta.body)).toContain("one more line");
    const baseAfter = await Promise.all(baseKeys.map((key) => readJson(key)));
    expect(baseAfter.map((b) => b.etag)).toEqual(baseBefore.map((b) => b.etag));
    const loaded = await repository(prefix).loadById("big");
    expect(loaded?.logs).toHaveLength(3_001);
    expect(loaded?.logs.at(-1)?.output).toBe("one more line");
  });

  it("a change set touching several tasks (link: child and two parents) commits as one object", async () => {
    const prefix = uniquePrefix();
    const manager = new TaskManager(new EventBus(), repository(prefix));
    await manager.loadFromRepository();
    const a = await manager.create({ title: "parent a" });
    const b = await manager.create({ title: "parent b" });
    const child = await manager.create({ title: "child", parentId: a });
    const before = new Set(await listKeys(raw, bucket, prefix));
    await manager.linkParentChild(b, child);
    const added = (await listKeys(raw, bucket, prefix)).filter((key) => !before.has(key));
    expect(added).toHaveLength(1);
    const tasks = await repository(prefix).loadAll();
    expect(tasks.find((t) => t.id === a)?.children).toEqual([]);
    expect(tasks.find((t) => t.id === b)?.children).toEqual([child]);
    expect(tasks.find((t) => t.id === child)?.parentId).toBe(b);
  });

  it("compaction starts a new epoch, the head follows it, and retired epochs are deleted after the grace period", async () => {
    const prefix = uniquePrefix();
    const repo = repository(prefix, { maxDeltas: 5, retiredEpochGraceMs: 0 });
    for (let i = 0; i < 17; i++) await repo.save(makeTask({ id: `t${i}`, logs: makeLogs(i % 3) }));
    const head = await readJson(`${prefix}head.json`);
    const epochs = new Set((await listKeys(raw, bucket, `${prefix}epochs/`)).map((key) => key.split("/")[2]));
    expect(epochs.has(head.body.epoch as string)).toBe(true);
    // Grace 0: at most the epoch just retired by the last compaction is left beside the live one.
    expect(epochs.size).toBeLessThanOrEqual(2);
    const loaded = await repository(prefix).loadAll();
    expect(loaded.map((t) => t.id)).toEqual(Array.from({ length: 17 }, (_, i) => `t${i}`));
  });

  it("a store of 1,100 tasks written as 1,100 separate deltas (over 1,000 keys to list) loads whole", async () => {
    const prefix = uniquePrefix();
    const writer = repository(prefix, { maxDeltas: 5_000 });
    for (let i = 0; i < 1_100; i++) await writer.save(makeTask({ id: `many-${String(i).padStart(4, "0")}` }));
    expect((await listKeys(raw, bucket, `${prefix}epochs/`)).length).toBeGreaterThan(1_000);
    const loaded = await repository(prefix, { maxDeltas: 5_000 }).loadAll();
    expect(loaded).toHaveLength(1_100);
    expect(new Set(loaded.map((t) => t.id)).size).toBe(1_100);
  }, 240_000);

  it("unknown fields at every level and the version string round-trip through saveData and loadData", async () => {
    const prefix = uniquePrefix();
    const d = driver(prefix);
    const data = {
      version: "1.3.0",
      tasks: [{ ...makeTask({ id: "x", logs: [{ timestamp: 1, output: "o", type: "log" }] }), extra: { deep: [1] } }],
      metadata: { lastUpdated: 5, totalTasks: 1, origin: "newer" },
      topLevel: true,
    };
    (data.tasks[0]?.logs[0] as Record<string, unknown>).color = "blue";
    await d.saveData(data as unknown as StorageData);
    expect(await driver(prefix).loadData()).toEqual(data);
  });

  it("uses a caller's S3Client without destroying it on close()", async () => {
    const client = rawClient(server);
    const d = new S3StorageDriver({ bucket, prefix: uniquePrefix(), client });
    await d.initialize();
    await d.close();
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${uniquePrefix()}still-usable`, Body: "x" }));
    client.destroy();
  });
});

describe("lock lease", () => {
  it("a held lease makes acquireLock() on another instance time out with LOCK_TIMEOUT, and is renewed while held", async () => {
    const prefix = uniquePrefix();
    const holder = driver(prefix, { lockExpiryMs: 600 });
    await holder.acquireLock();
    const other = driver(prefix, { lockTimeoutMs: 1_500, lockExpiryMs: 600 });
    await expect(other.acquireLock()).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "LOCK_TIMEOUT"));
    await holder.releaseLock();
    await other.acquireLock();
    await other.releaseLock();
  });

  it("releaseLock() while a renewal is in flight still releases the lease", async () => {
    const prefix = uniquePrefix();
    const d = driver(prefix, { lockExpiryMs: 150 }); // renewed every 50 ms
    for (let round = 0; round < 40; round++) {
      await d.acquireLock();
      // Around the moment the renewal goes out, so some releases meet one in flight.
      await new Promise((resolve) => setTimeout(resolve, 45 + Math.random() * 15));
      await d.releaseLock();
      const lease = await readJson(`${prefix}lock.json`);
      expect({ round, released: lease.body.released }).toEqual({ round, released: true });
    }
  });

  it("an expired lease of a crashed holder is taken over", async () => {
    const prefix = uniquePrefix();
    const crashed = { owner: "gone", pid: 1, host: "elsewhere", since: 1, expiresAt: Date.now() - 1_000 };
    await raw.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}lock.json`, Body: JSON.stringify(crashed) }));
    const d = driver(prefix, { lockTimeoutMs: 2_000 });
    await d.acquireLock();
    const lease = await readJson(`${prefix}lock.json`);
    expect(lease.body.owner).not.toBe("gone");
    expect(lease.body.pid).toBe(process.pid);
  });

  it("releaseLock() by an instance whose lease was taken over leaves the new holder's lease in place", async () => {
    const prefix = uniquePrefix();
    const first = driver(prefix, { lockExpiryMs: 60_000 });
    await first.acquireLock();
    // Another holder takes it over behind first's back (as after an expiry).
    const current = await readJson(`${prefix}lock.json`);
    const usurper = { ...current.body, owner: "usurper", expiresAt: Date.now() + 60_000 };
    await raw.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}lock.json`, Body: JSON.stringify(usurper) }));
    await first.releaseLock();
    const after = await readJson(`${prefix}lock.json`);
    expect(after.body).toMatchObject({ owner: "usurper" });
    expect(after.body.released).toBeUndefined();
  });
});

describe("recovery", () => {
  it("a corrupt head is moved aside (copied, not deleted) and the last backup restored", async () => {
    const prefix = uniquePrefix();
    const repo = repository(prefix);
    await repo.save(makeTask({ id: "kept" }));
    await repo.backup();
    await raw.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}head.json`, Body: "{ not json" }));
    const recovering = repository(prefix);
    const recovered: unknown[] = [];
    recovering.events.on("storage:recovered", (event) => recovered.push(event));
    expect((await recovering.loadAll()).map((t) => t.id)).toEqual(["kept"]);
    expect(recovered).toHaveLength(1);
    const aside = await listKeys(raw, bucket, `${prefix}aside/`);
    const corruptCopy = aside.find((key) => key.endsWith("/head.json")) as string;
    const out = await raw.send(new GetObjectCommand({ Bucket: bucket, Key: corruptCopy }));
    expect(await out.Body?.transformToString()).toBe("{ not json");
    await repository(prefix).save(makeTask({ id: "after" }));
    expect((await repository(prefix).loadAll()).map((t) => t.id)).toEqual(["kept", "after"]);
  });

  it("restore() skips a newer backup that core's schema refuses and takes the one before", async () => {
    const prefix = uniquePrefix();
    const repo = repository(prefix);
    await repo.save(makeTask({ id: "kept" }));
    await repo.backup();
    // A newer backup that parses as JSON, with a version and a task list, but a task core refuses.
    const bad = {
      version: "1.0.0",
      tasks: [{ ...makeTask({ id: "bad" }), status: "exploded" }],
      metadata: { lastUpdated: 1, totalTasks: 1 },
    };
    await raw.send(
      new PutObjectCommand({ Bucket: bucket, Key: `${prefix}backups/9999-12-31T00-00-00-000Z-ffffff.json`, Body: JSON.stringify(bad) }),
    );
    await repo.save(makeTask({ id: "later" }));
    const result = await driver(prefix).restore();
    expect(result.restoredFrom).not.toContain("9999");
    expect((await repository(prefix).loadAll()).map((t) => t.id)).toEqual(["kept"]);
  });

  for (const damage of ["a corrupt base", "no damage"] as const) {
    it(`after a restore (${damage}), an append by an instance still caching the old epoch lands in the restored store`, async () => {
      const prefix = uniquePrefix();
      // Instance A writes, so it caches the current epoch; it is never refreshed below.
      const a = new TaskManager(new EventBus(), repository(prefix));
      await a.loadFromRepository();
      const id = await a.create({ title: "kept" });
      // Instance B backs the store up; it is restored (through core's recovery when damaged).
      const b = repository(prefix);
      await b.backup();
      if (damage === "a corrupt base") {
        const base = (await listKeys(raw, bucket, `${prefix}epochs/`)).find((key) => key.endsWith("/base.json")) as string;
        await raw.send(new PutObjectCommand({ Bucket: bucket, Key: base, Body: "{ not json" }));
        // A fresh instance (B has the base cached) finds the store unreadable and restores.
        const c = repository(prefix);
        const recovered: unknown[] = [];
        c.events.on("storage:recovered", (event) => recovered.push(event));
        expect((await c.loadAll()).map((t) => t.id)).toEqual([id]);
        expect(recovered).toHaveLength(1);
      } else {
        await b.restore();
      }
      await a.appendOutput(id, "written after the restore");
      await a.flush();
      const fresh = await repository(prefix).loadAll();
      expect(fresh.find((t) => t.id === id)?.logs.map((entry) => entry.output)).toEqual(["written after the restore"]);
    });
  }
});

/** The deprecation warnings among what `process.emitWarning` was called with. */
const deprecations = (spy: { mock: { calls: unknown[][] } }) =>
  spy.mock.calls.filter((call) => (call[1] as { code?: string } | undefined)?.code === "TASKSTORE_DEPRECATED_OPTION");

describe("options", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** How long the lease `acquireLock()` wrote lasts: `expiresAt - since`. */
  async function leaseLength(extra: Partial<S3StorageDriverOptions>): Promise<number> {
    const prefix = uniquePrefix();
    const d = driver(prefix, extra);
    await d.acquireLock();
    const { body } = await readJson(`${prefix}lock.json`);
    await d.releaseLock();
    return (body.expiresAt as number) - (body.since as number);
  }

  it("lockExpiryMs is the lease length", async () => {
    expect(await leaseLength({ lockExpiryMs: 45_000 })).toBe(45_000);
  });

  it("the deprecated leaseMs still works, and warns once per process with TASKSTORE_DEPRECATED_OPTION", async () => {
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => undefined);
    expect(await leaseLength({ leaseMs: 40_000 })).toBe(40_000);
    expect(await leaseLength({ leaseMs: 40_000 })).toBe(40_000);
    const calls = deprecations(warn);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.[0]).toMatch(/^s3: the option leaseMs is deprecated.*lockExpiryMs/);
  });

  it("maxConflictRetries counts retries: with 1, a change set beaten by another writer every time runs twice, then CONFLICT", async () => {
    const prefix = uniquePrefix();
    const d = driver(prefix, { maxConflictRetries: 1 });
    const other = driver(prefix);
    await d.saveData({ version: "1.0.0", tasks: [makeTask({ id: "a" })], metadata: { lastUpdated: 1, totalTasks: 1 } });
    let runs = 0;
    const outcome = await d
      .transact(async (reader) => {
        runs++;
        await reader.get("a");
        // Another writer commits first, every time.
        await other.transact(async () => ({ puts: [makeTask({ id: `other-${runs}` })], logs: [], deletes: [] }));
        return { puts: [makeTask({ id: "a", title: "mine" })], logs: [], deletes: [] };
      })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(TaskStoreError.hasCode(outcome, "CONFLICT")).toBe(true);
    expect(runs).toBe(2);
  });

  it("the first change set on a store never written is not a conflict, even with maxConflictRetries 0", async () => {
    const d = driver(uniquePrefix(), { maxConflictRetries: 0 });
    await d.transact(async () => ({ puts: [makeTask({ id: "first" })], logs: [], deletes: [] }));
    expect((await d.loadData()).tasks.map((t) => t.id)).toEqual(["first"]);
  });

  it("bad options are VALIDATION from the constructor, never a TypeError", () => {
    const base = driverOptions(server, bucket, uniquePrefix());
    const bad: unknown[] = [
      undefined,
      { ...base, bucket: undefined },
      { ...base, etagQuoting: "sometimes" },
      { ...base, maxAttempts: 0 },
      { ...base, requestTimeoutMs: "15s" },
      { ...base, lockExpiryMs: -1 },
      { ...base, maxConflictRetries: 1.5 },
      { ...base, maxDeltas: 0 },
      { ...base, leaseMs: 1_000, lockExpiryMs: 2_000 },
    ];
    for (const options of bad) {
      // A code, so never a TypeError (which has none).
      expect(() => new S3StorageDriver(options as S3StorageDriverOptions), JSON.stringify(options)).toThrow(
        expect.objectContaining({ code: "VALIDATION", message: expect.stringMatching(/^s3: invalid input: /) }),
      );
    }
  });
});
