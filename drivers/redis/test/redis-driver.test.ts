import { EventBus, type StoredTask, TaskManager, TaskRepository, TaskStoreError } from "@taskstore/core";
import { RedisStorageDriver, type RedisStorageDriverOptions } from "@taskstore/driver-redis";
import { startRedis } from "@taskstore/test-services";
import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { deleteStore, uniquePrefix } from "./helpers.js";

const server = await startRedis();
const target = { url: server.url };
const raw = new Redis(server.url);
afterAll(async () => {
  raw.disconnect();
  await server.stop();
});

function task(id: string, title = `task ${id}`): StoredTask {
  const now = Date.now();
  return { id, title, status: "pending", progress: { percent: 0 }, metadata: {}, createdAt: now, updatedAt: now, children: [], logs: [] };
}

async function keysOf(prefix: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await raw.scan(cursor, "MATCH", `{${prefix}}:*`, "COUNT", 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== "0");
  return found.sort();
}

async function open(prefix: string, options = {}): Promise<RedisStorageDriver> {
  const driver = new RedisStorageDriver({ ...target, prefix, ...options });
  await driver.initialize();
  return driver;
}

describe("RedisStorageDriver key layout", () => {
  it("keeps one key per task, a log list, an id index and a meta hash, all under the hash tag {prefix}", async () => {
    const prefix = uniquePrefix();
    const repository = new TaskRepository({ driver: new RedisStorageDriver({ ...target, prefix }) });
    const manager = new TaskManager(new EventBus(), repository);
    await manager.loadFromRepository();
    const id = await manager.create({ title: "layout" });
    await manager.appendOutput(id, "hello");
    await manager.close();
    // One marker per commit (the create and the append), "1", expiring on its own.
    const all = await keysOf(prefix);
    const markers = all.filter((key) => key.startsWith(`{${prefix}}:tx:`));
    expect(markers).toHaveLength(2);
    for (const marker of markers) {
      expect(await raw.get(marker)).toBe("1");
      expect(await raw.pttl(marker)).toBeGreaterThan(0);
    }
    expect(all.filter((key) => !markers.includes(key))).toEqual(
      [
        `{${prefix}}:main:ids`,
        `{${prefix}}:main:l:${id}`,
        `{${prefix}}:main:meta`,
        `{${prefix}}:main:seq`,
        `{${prefix}}:main:t:${id}`,
        `{${prefix}}:rev`,
      ].sort(),
    );
    expect(JSON.parse((await raw.get(`{${prefix}}:main:t:${id}`)) as string)).toMatchObject({ id, title: "layout" });
    expect(await raw.type(`{${prefix}}:main:l:${id}`)).toBe("list");
    expect(await raw.hget(`{${prefix}}:main:meta`, "version")).toBe("1.0.0");
    await deleteStore(target, prefix);
  });

  it("refuses prefixes that could leave the hash tag or reach another store's keys", () => {
    for (const prefix of ["", "a}b", "a{b", "a b", "a*", "x".repeat(201), "tab\t"]) {
      expect(() => new RedisStorageDriver({ ...target, prefix }), prefix).toThrow(expect.objectContaining({ code: "VALIDATION" }));
    }
  });

  it("stores whose prefixes nest (a, a:b, a:main) never see each other's tasks", async () => {
    const base = uniquePrefix();
    const prefixes = [base, `${base}:b`, `${base}:main`, `${base}:main:t`];
    for (const prefix of prefixes) {
      const driver = await open(prefix);
      await driver.saveData({
        version: "1.0.0",
        tasks: [task("b"), task(`only-${prefixes.indexOf(prefix)}`)],
        metadata: { lastUpdated: 1, totalTasks: 2 },
      });
      await driver.close();
    }
    for (const prefix of prefixes) {
      const driver = await open(prefix);
      const ids = (await driver.loadData()).tasks.map((t) => t.id);
      expect(ids).toEqual(["b", `only-${prefixes.indexOf(prefix)}`]);
      await driver.close();
      await deleteStore(target, prefix);
    }
  });

  it("a task key that is not JSON makes loadData() throw CORRUPT_DATA", async () => {
    const prefix = uniquePrefix();
    const driver = await open(prefix);
    await driver.saveData({ version: "1.0.0", tasks: [task("a")], metadata: { lastUpdated: 1, totalTasks: 1 } });
    await raw.set(`{${prefix}}:main:t:a`, "{not json");
    await expect(driver.loadData()).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "CORRUPT_DATA"));
    await driver.close();
    await deleteStore(target, prefix);
  });

  it("backup() copies the store under {prefix}:backup and restore() moves the live store aside, deleting nothing", async () => {
    const prefix = uniquePrefix();
    const driver = await open(prefix);
    await driver.saveData({ version: "1.0.0", tasks: [task("kept")], metadata: { lastUpdated: 1, totalTasks: 1 } });
    await driver.backup();
    await driver.saveData({ version: "1.0.0", tasks: [task("later")], metadata: { lastUpdated: 2, totalTasks: 1 } });
    expect(await raw.get(`{${prefix}}:backup:t:kept`)).not.toBeNull();
    const result = await driver.restore();
    expect(result.restoredFrom).toBe(`redis:{${prefix}}:backup:*`);
    expect(result.movedTo).toMatch(new RegExp(`^redis:\\{${prefix}\\}:aside:\\d{8}T\\d{9}Z-[0-9a-f]{8}:\\*$`));
    expect((await driver.loadData()).tasks.map((t) => t.id)).toEqual(["kept"]);
    const asideBase = (result.movedTo as string).slice("redis:".length, -1);
    expect(JSON.parse((await raw.get(`${asideBase}t:later`)) as string)).toMatchObject({ id: "later" });
    expect(await raw.get(`{${prefix}}:backup:t:kept`)).not.toBeNull();
    expect((await driver.describe()).lastBackupAt).toBeGreaterThan(0);
    await driver.close();
    await deleteStore(target, prefix);
  });

  it("never sends KEYS: loading, saving, transactions, backup and restore use the id index", async () => {
    const prefix = uniquePrefix();
    const seen: string[] = [];
    const monitor = await raw.monitor();
    monitor.on("monitor", (_time: string, args: string[]) => seen.push(String(args[0]).toUpperCase()));
    const repository = new TaskRepository({ driver: new RedisStorageDriver({ ...target, prefix }) });
    const manager = new TaskManager(new EventBus(), repository);
    await manager.loadFromRepository();
    const id = await manager.create({ title: "scan me" });
    await manager.appendOutput(id, "line");
    await repository.backup();
    await repository.restore();
    await repository.loadAll();
    await manager.close();
    monitor.disconnect();
    expect(seen).toContain("EVALSHA");
    expect(seen).not.toContain("KEYS");
    await deleteStore(target, prefix);
  });
});

describe("RedisStorageDriver lock", () => {
  it("releaseLock() of an instance whose lock expired leaves the new holder's lock in place", async () => {
    const prefix = uniquePrefix();
    const first = await open(prefix);
    const second = await open(prefix, { lockTimeoutMs: 2_000 });
    await first.acquireLock();
    await raw.del(`{${prefix}}:lock`); // the lock expired (a long pause)
    await second.acquireLock();
    await first.releaseLock();
    expect(JSON.parse((await raw.get(`{${prefix}}:lock`)) as string)).toMatchObject({ pid: process.pid });
    await expect(open(prefix, { lockTimeoutMs: 200 }).then((third) => third.acquireLock().finally(() => third.close()))).rejects.toSatisfy(
      (error) => TaskStoreError.hasCode(error, "LOCK_TIMEOUT"),
    );
    await second.releaseLock();
    expect(await raw.get(`{${prefix}}:lock`)).toBeNull();
    await Promise.all([first.close(), second.close()]);
  });

  it("is renewed while held, so it outlives its ttl; a holder that stops renewing loses it after the ttl", async () => {
    const prefix = uniquePrefix();
    // The holder runs on a client of the test's own, so the test can make it vanish.
    const holderClient = new Redis(server.url);
    const holder = await open(prefix, { client: holderClient, lockExpiryMs: 300 });
    await holder.acquireLock();
    await new Promise((resolve) => setTimeout(resolve, 900));
    expect(await raw.pttl(`{${prefix}}:lock`)).toBeGreaterThan(0);
    const waiter = await open(prefix, { lockTimeoutMs: 5_000 });
    await expect(open(prefix, { lockTimeoutMs: 100 }).then((third) => third.acquireLock().finally(() => third.close()))).rejects.toSatisfy(
      (error) => TaskStoreError.hasCode(error, "LOCK_TIMEOUT"),
    );
    // A crash: the holder's client vanishes without releasing; renewal stops with it.
    holderClient.disconnect();
    await waiter.acquireLock();
    await Promise.all([waiter.close(), holder.close()]);
  });

  it("a transaction waits while another instance holds the store lock", async () => {
    const prefix = uniquePrefix();
    const holder = await open(prefix);
    await holder.acquireLock();
    const repository = new TaskRepository({ driver: new RedisStorageDriver({ ...target, prefix }) });
    let saved = false;
    const saving = repository.save(task("waits")).then(() => {
      saved = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(saved).toBe(false);
    await holder.releaseLock();
    await saving;
    expect((await repository.loadAll()).map((t) => t.id)).toEqual(["waits"]);
    await Promise.all([repository.close(), holder.close()]);
    await deleteStore(target, prefix);
  });
});

describe("RedisStorageDriver clients and notifications", () => {
  it("close() leaves a caller's client open", async () => {
    const client = new Redis(server.url);
    const driver = new RedisStorageDriver({ client, prefix: uniquePrefix() });
    await driver.initialize();
    await driver.loadData();
    await driver.close();
    expect(await client.ping()).toBe("PONG");
    client.disconnect();
  });

  it("watch() reports commits of other instances and not the watcher's own", async () => {
    const prefix = uniquePrefix();
    const watcher = await open(prefix);
    let calls = 0;
    const stop = watcher.watch(() => calls++);
    await new Promise((resolve) => setTimeout(resolve, 100)); // the subscription is made
    const own = new TaskRepository({ driver: watcher });
    await own.save(task("own"));
    const other = new TaskRepository({ driver: new RedisStorageDriver({ ...target, prefix }) });
    await other.save(task("other"));
    await vi_eventually(() => calls === 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls).toBe(1);
    stop();
    await Promise.all([own.close(), other.close()]);
    await deleteStore(target, prefix);
  });

  it("a TaskManager follows another process's changes through watch()", async () => {
    const prefix = uniquePrefix();
    const follower = new TaskManager(new EventBus(), new TaskRepository({ driver: new RedisStorageDriver({ ...target, prefix }) }));
    await follower.loadFromRepository();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const writer = new TaskManager(new EventBus(), new TaskRepository({ driver: new RedisStorageDriver({ ...target, prefix }) }));
    await writer.loadFromRepository();
    const id = await writer.create({ title: "seen elsewhere" });
    await vi_eventually(() => follower.findById(id)?.title === "seen elsewhere");
    await Promise.all([follower.close(), writer.close()]);
    await deleteStore(target, prefix);
  });
});

describe("RedisStorageDriver announcements", () => {
  it("announces a commit only when someone besides the committing instance listens", async () => {
    const own = await startRedis({ dedicated: true });
    const admin = new Redis(own.url);
    const prefix = uniquePrefix();
    const alone = new TaskManager(new EventBus(), new TaskRepository({ driver: new RedisStorageDriver({ url: own.url, prefix }) }));
    await alone.loadFromRepository(); // subscribed: its own subscriber listens
    await admin.config("RESETSTAT");
    const id = await alone.create({ title: "nobody else listens" });
    await alone.appendOutput(id, "still nobody");
    const stats = await admin.info("commandstats");
    expect(stats).toMatch(/cmdstat_evalsha:calls=2,/);
    expect(stats).not.toMatch(/cmdstat_publish:/);

    // Another listener (a plain subscriber here) hears every commit from then on, named by its instance.
    const listener = new Redis(own.url);
    const heard: string[] = [];
    listener.on("message", (_channel: string, from: string) => heard.push(from));
    await listener.subscribe(`{${prefix}}:changes`);
    await alone.appendOutput(id, "now someone listens");
    await alone.complete(id).catch(() => undefined); // pending -> completed is refused: no commit
    await alone.start(id);
    await vi_eventually(() => heard.length === 2);
    expect(new Set(heard).size).toBe(1);
    listener.disconnect();
    await alone.close();
    admin.disconnect();
    await own.stop();
  });

  it("a user whose ACL refuses PUBSUB still commits, and every commit is announced", async () => {
    const own = await startRedis({ dedicated: true });
    const admin = new Redis(own.url);
    await admin.call("ACL", "SETUSER", "limited", "on", ">limited-secret", "~*", "&*", "+@all", "-pubsub");
    const prefix = uniquePrefix();
    const url = new URL(own.url);
    url.username = "limited";
    url.password = "limited-secret";
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new RedisStorageDriver({ url: url.href, prefix }) }));
    await manager.loadFromRepository();
    const heard: string[] = [];
    const listener = new Redis(own.url);
    listener.on("message", (_channel: string, from: string) => heard.push(from));
    await listener.subscribe(`{${prefix}}:changes`);
    const id = await manager.create({ title: "limited user" });
    await manager.appendOutput(id, "written");
    expect(manager.findById(id)?.logs).toHaveLength(1);
    await vi_eventually(() => heard.length === 2);
    listener.disconnect();
    await manager.close();
    const check = new RedisStorageDriver({ url: own.url, prefix });
    await check.initialize();
    expect((await check.loadData()).tasks.map((task) => task.logs.length)).toEqual([1]);
    await check.close();
    admin.disconnect();
    await own.stop();
  });

  it("a load right after watch() waits for the subscription, so the next commit is not missed", async () => {
    const prefix = uniquePrefix();
    const writer = new TaskManager(new EventBus(), new TaskRepository({ driver: new RedisStorageDriver({ ...target, prefix }) }));
    await writer.loadFromRepository();
    for (let round = 0; round < 5; round++) {
      const follower = await open(prefix);
      let calls = 0;
      const stop = follower.watch(() => calls++);
      await follower.loadData(); // on the main connection, while the subscriber connects
      await writer.create({ title: `round ${round}` });
      await vi_eventually(() => calls === 1);
      stop();
      await follower.close();
    }
    await writer.close();
    await deleteStore(target, prefix);
  });
});

describe("RedisStorageDriver when the server goes away", () => {
  it("fails fast with STORAGE_UNAVAILABLE while the server is down and reconnects once it is back", async () => {
    const own = await startRedis({ dedicated: true, appendonly: true });
    const driver = new RedisStorageDriver({ url: own.url, prefix: uniquePrefix() });
    await driver.initialize();
    await driver.saveData({ version: "1.0.0", tasks: [task("before")], metadata: { lastUpdated: 1, totalTasks: 1 } });
    await own.kill();
    await expect(driver.loadData()).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "STORAGE_UNAVAILABLE"));
    await expect(driver.acquireLock()).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "STORAGE_UNAVAILABLE"));
    await own.restart();
    await vi_eventually(async () => (await driver.loadData().catch(() => undefined))?.tasks.length === 1);
    await driver.close();
    await own.stop();
  });
});

async function vi_eventually(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** The deprecation warnings among what `process.emitWarning` was called with. */
const deprecations = (spy: { mock: { calls: unknown[][] } }) =>
  spy.mock.calls.filter((call) => (call[1] as { code?: string } | undefined)?.code === "TASKSTORE_DEPRECATED_OPTION");

/** The ttl (ms) of the lock key right after `acquireLock()`. */
async function lockTtl(options: Partial<RedisStorageDriverOptions>): Promise<number> {
  const prefix = uniquePrefix("options");
  const driver = new RedisStorageDriver({ ...target, prefix, ...options });
  await driver.initialize();
  await driver.acquireLock();
  const ttl = await raw.pttl(`{${prefix}}:lock`);
  await driver.close();
  await deleteStore(target, prefix);
  return ttl;
}

/**
 * How many times a transaction's work runs when every run sees the task it read changed by
 * someone else before it commits, and what it finally throws.
 */
async function runsUnderConstantConflict(options: Partial<RedisStorageDriverOptions>): Promise<{ runs: number; error: unknown }> {
  const prefix = uniquePrefix("options");
  const driver = new RedisStorageDriver({ ...target, prefix, ...options });
  await driver.initialize();
  await driver.saveData({ version: "1.0.0", tasks: [{ ...task("a") }], metadata: { lastUpdated: 1, totalTasks: 1 } });
  let runs = 0;
  const error = await driver
    .transact(async (reader) => {
      runs++;
      await reader.get("a");
      await raw.set(`{${prefix}}:main:t:a`, JSON.stringify({ ...task("a", `changed ${runs}`), logs: undefined }));
      return { puts: [task("a", "mine")], logs: [], deletes: [] };
    })
    .then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
  await driver.close();
  await deleteStore(target, prefix);
  return { runs, error };
}

describe("RedisStorageDriver options", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("lockExpiryMs is the lock key's ttl", async () => {
    const ttl = await lockTtl({ lockExpiryMs: 45_000 });
    expect(ttl).toBeGreaterThan(40_000);
    expect(ttl).toBeLessThanOrEqual(45_000);
  });

  it("the deprecated lockTtlMs still works, and warns once per process with TASKSTORE_DEPRECATED_OPTION", async () => {
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => undefined);
    for (let i = 0; i < 2; i++) {
      const ttl = await lockTtl({ lockTtlMs: 40_000 });
      expect(ttl).toBeGreaterThan(35_000);
      expect(ttl).toBeLessThanOrEqual(40_000);
    }
    const calls = deprecations(warn);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.[0]).toMatch(/^redis: the option lockTtlMs is deprecated.*lockExpiryMs/);
  });

  it("maxConflictRetries: 2 runs a change set three times under constant conflict, then CONFLICT", async () => {
    const { runs, error } = await runsUnderConstantConflict({ maxConflictRetries: 2 });
    expect(TaskStoreError.hasCode(error, "CONFLICT")).toBe(true);
    expect(runs).toBe(3);
  });

  it("the deprecated maxAttempts counts attempts: maxAttempts: 3 is maxConflictRetries: 2, and warns once", async () => {
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => undefined);
    const { runs, error } = await runsUnderConstantConflict({ maxAttempts: 3 });
    expect(TaskStoreError.hasCode(error, "CONFLICT")).toBe(true);
    expect(runs).toBe(3);
    expect(deprecations(warn).map((call) => call[0])).toEqual([expect.stringMatching(/maxAttempts: 3 is maxConflictRetries: 2/)]);
  });

  it("an old and a new name with different values are VALIDATION", () => {
    for (const options of [
      { lockTtlMs: 1_000, lockExpiryMs: 2_000 },
      { maxAttempts: 10, maxConflictRetries: 10 },
    ]) {
      expect(() => new RedisStorageDriver({ ...target, prefix: uniquePrefix(), ...options })).toThrow(
        expect.objectContaining({ code: "VALIDATION" }),
      );
    }
  });

  it("bad options are VALIDATION from the constructor: no server named, a bad number, a bad prefix", () => {
    const bad: unknown[] = [
      {},
      { ...target, prefix: "{braces}" },
      { ...target, lockTimeoutMs: "30s" },
      { ...target, commandTimeoutMs: 0 },
      { ...target, lockExpiryMs: 0.5 },
      { ...target, maxConflictRetries: -1 },
      { ...target, maxAttempts: 0 },
    ];
    for (const options of bad) {
      expect(() => new RedisStorageDriver(options as RedisStorageDriverOptions), JSON.stringify(options)).toThrow(
        expect.objectContaining({ code: "VALIDATION", message: expect.stringMatching(/^redis: invalid input: /) }),
      );
    }
  });
});
