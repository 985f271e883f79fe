import { makeTask } from "@taskstore/conformance";
import { EventBus, type StoredTask, TaskManager, TaskRepository, TaskStoreError } from "@taskstore/core";
import { PostgresStorageDriver } from "@taskstore/driver-postgres";
import { type PostgresServer, startPostgres } from "@taskstore/test-services";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { driverOn, dropStore, freshSchema } from "./helpers.js";

let server: PostgresServer;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(() => server?.stop());

const opened: PostgresStorageDriver[] = [];
const schemas: string[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((driver) => driver.close().catch(() => undefined)));
  await Promise.all(schemas.splice(0).map((schema) => dropStore(server.url, schema)));
});

/** An initialized driver on a fresh store (or on `schema`), closed and dropped after the test. */
async function open(options: { schema?: string; lockTimeoutMs?: number; url?: string } = {}): Promise<PostgresStorageDriver> {
  const schema = options.schema ?? freshSchema();
  if (!schemas.includes(schema)) schemas.push(schema);
  const driver = driverOn(options.url ?? server.url, schema, options.lockTimeoutMs ? { lockTimeoutMs: options.lockTimeoutMs } : {});
  opened.push(driver);
  await driver.initialize();
  return driver;
}

async function sql<T extends pg.QueryResultRow>(text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

describe("PostgresStorageDriver options", () => {
  it.each(['bad"name', "Upper", "two__underscores", "", "9starts_with_digit", "x".repeat(41), "a; drop schema public"])(
    "the schema name %j is refused with VALIDATION before anything is sent",
    (schema) => {
      expect(() => new PostgresStorageDriver({ connectionString: server.url, schema })).toThrow(
        expect.objectContaining({ code: "VALIDATION" }),
      );
    },
  );

  it.each([{ lockTimeoutMs: "30s" }, { connectTimeoutMs: -1 }, { poolSize: 0 }, { poolSize: 2.5 }, { confirmTimeoutMs: Number.NaN }])(
    "the option %j is refused with VALIDATION by the constructor",
    (options) => {
      expect(() => new PostgresStorageDriver({ connectionString: server.url, ...(options as object) })).toThrow(
        expect.objectContaining({ code: "VALIDATION", message: expect.stringMatching(/^postgres: invalid input: /) }),
      );
    },
  );

  it("two stores in different schemas of one database never see each other's tasks", async () => {
    const a = await open();
    const b = await open();
    await a.saveData({ version: "1.0.0", tasks: [makeTask({ id: "only-in-a" })], metadata: { lastUpdated: 1, totalTasks: 1 } });
    expect((await b.loadData()).tasks).toEqual([]);
    expect((await a.loadData()).tasks.map((task) => task.id)).toEqual(["only-in-a"]);
  });

  it("a caller's pool is used as it is and not ended by close()", async () => {
    const pool = new pg.Pool({ connectionString: server.url, max: 3 });
    const schema = freshSchema();
    schemas.push(schema);
    const driver = new PostgresStorageDriver({ pool, schema });
    await driver.initialize();
    await driver.saveData({ version: "1.0.0", tasks: [makeTask()], metadata: { lastUpdated: 1, totalTasks: 1 } });
    await driver.close();
    expect((await pool.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    await pool.end();
  });
});

describe("PostgresStorageDriver storage", () => {
  it("NUL characters and lone surrogates, which jsonb refuses, round-trip in task fields and log entries", async () => {
    // Through core: NUL is stored exactly (core refuses lone surrogates on every driver alike).
    const odd = "nul\u0000 pair😀 back\\u0000slash";
    const driver = await open();
    const task = makeTask({ id: "odd", title: odd, metadata: { [odd]: odd }, logs: [{ timestamp: 1, output: odd, type: "stdout" }] });
    const repository = new TaskRepository({ driver });
    await repository.save(task);
    // Straight to the driver, as a store an older version wrote may hold one: kept exactly too.
    const lone = `${odd} lone\ud800`;
    const old = makeTask({ id: "lone", title: lone, metadata: { [lone]: lone }, logs: [{ timestamp: 2, output: lone, type: "stdout" }] });
    const data = await driver.loadData();
    await driver.saveData({ ...data, tasks: [...data.tasks, old], metadata: { ...data.metadata, totalTasks: 2 } });
    const fresh = await open({ schema: schemas[0] });
    expect((await fresh.loadData()).tasks).toEqual([task, old]);
  });

  it("rows hold the task as a jsonb body with parent and status columns, and one row per log entry", async () => {
    const driver = await open();
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver }));
    await manager.loadFromRepository();
    const parent = await manager.create({ title: "parent" });
    const child = await manager.create({ title: "child", parentId: parent });
    await manager.start(child);
    await manager.appendOutput(child, "one");
    await manager.appendOutput(child, "two");
    const schema = schemas[0];
    const rows = await sql<{ id: string; parent_id: string | null; status: string; title: string }>(
      `SELECT id, parent_id, status, body->>'title' AS title FROM "${schema}".tasks ORDER BY pos`,
    );
    expect(rows).toEqual([
      { id: parent, parent_id: null, status: "pending", title: "parent" },
      { id: child, parent_id: parent, status: "running", title: "child" },
    ]);
    const logs = await sql<{ output: string }>(
      `SELECT entry->>'output' AS output FROM "${schema}".logs WHERE task_id = '${child}' ORDER BY seq`,
    );
    expect(logs.map((row) => row.output)).toEqual(["one", "two"]);
  });

  it("a log over the repository's cap keeps only its newest entries", async () => {
    const driver = await open();
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver, logCap: 3 }));
    await manager.loadFromRepository();
    const id = await manager.create({ title: "chatty" });
    for (let i = 0; i < 5; i++) await manager.appendOutput(id, `line ${i}`);
    await Promise.all([5, 6, 7].map((i) => manager.appendOutput(id, `line ${i}`)));
    const stored = (await driver.loadData()).tasks[0] as StoredTask;
    expect(stored.logs.map((entry) => entry.output)).toEqual(["line 5", "line 6", "line 7"]);
    expect(stored.droppedLogCount).toBe(5);
    expect(await sql(`SELECT 1 FROM "${schemas[0]}".logs`)).toHaveLength(3);
  });

  it("restore() moves the current schema aside, still readable, and keeps the backup for another restore", async () => {
    const driver = await open();
    const repository = new TaskRepository({ driver });
    await repository.save(makeTask({ id: "backed-up" }));
    await repository.backup();
    await repository.save(makeTask({ id: "made-after" }));
    const result = await repository.restore();
    const aside = /(\S+__aside_\d+)/.exec(result.movedTo ?? "")?.[1];
    expect(aside).toBeDefined();
    expect((await sql<{ id: string }>(`SELECT id FROM "${aside}".tasks ORDER BY pos`)).map((row) => row.id)).toEqual([
      "backed-up",
      "made-after",
    ]);
    expect((await driver.loadData()).tasks.map((task) => task.id)).toEqual(["backed-up"]);
    await repository.save(makeTask({ id: "after-restore" }));
    await repository.restore();
    expect((await driver.loadData()).tasks.map((task) => task.id)).toEqual(["backed-up"]);
  });

  it("a schema version changed by another instance after this one cached it is seen before anything is written", async () => {
    const driver = await open();
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver }));
    await manager.loadFromRepository();
    const id = await manager.create({ title: "cached 1.0.0" });
    await manager.appendOutput(id, "written under 1.0.0");
    const other = await open({ schema: schemas[0] });
    const data = await other.loadData();
    await other.saveData({ ...data, version: "2.0.0" });
    await expect(manager.appendOutput(id, "must not be written")).rejects.toSatisfy((error) =>
      TaskStoreError.hasCode(error, "VERSION_UNSUPPORTED"),
    );
    const after = await other.loadData();
    expect(after.version).toBe("2.0.0");
    expect(after.tasks[0]?.logs.map((entry) => entry.output)).toEqual(["written under 1.0.0"]);
  });

  it("initialize() refuses tables made by a newer driver with VERSION_UNSUPPORTED, naming the package to upgrade", async () => {
    const driver = await open();
    await sql(`INSERT INTO "${schemas[0]}".migrations (version, name) VALUES (999, 'from the future')`);
    const again = driverOn(server.url, schemas[0] as string);
    opened.push(again);
    await expect(again.initialize()).rejects.toSatisfy(
      (error) =>
        TaskStoreError.hasCode(error, "VERSION_UNSUPPORTED") &&
        /^postgres: .*upgrade @taskstore\/driver-postgres/.test((error as Error).message),
    );
    expect(driver).toBeDefined();
  });

  it("a TaskManager's write to tables of a newer driver fails with VERSION_UNSUPPORTED and is not kept to retry as an outage", async () => {
    await open();
    await sql(`INSERT INTO "${schemas[0]}".migrations (version, name) VALUES (999, 'from the future')`);
    const driver = driverOn(server.url, schemas[0] as string);
    opened.push(driver);
    const repository = new TaskRepository({ driver });
    const events: string[] = [];
    const manager = new TaskManager(new EventBus(), repository);
    repository.events.on("persistence:error", ({ error }) => events.push(error.code));
    await expect(manager.create({ title: "never written" })).rejects.toSatisfy((error) =>
      TaskStoreError.hasCode(error, "VERSION_UNSUPPORTED"),
    );
    expect(repository.pendingChanges()).toEqual([]);
    expect(events).not.toContain("STORAGE_UNAVAILABLE");
    await manager.close();
  });
});

describe("PostgresStorageDriver watch", () => {
  const cleanup: (() => unknown)[] = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0)) await step();
  });

  it("watch() resolves once its LISTEN is live, so a load after it misses no commit", async () => {
    const writer = await open();
    // The watcher on a pool of ours whose one connection is busy: its LISTEN needs a new
    // connection, which takes far longer than the look below on a connection made before.
    const pool = new pg.Pool({ connectionString: server.url, max: 4 });
    const watcher = driverOn(server.url, schemas[0] as string, { pool });
    await watcher.initialize();
    const busy = await pool.connect();
    let calls = 0;
    const checker = new pg.Client({ connectionString: server.url });
    await checker.connect();
    let listening: number | undefined;
    try {
      const stop = await watcher.watch(() => calls++);
      // Live the moment it resolves: a backend of this database has run the LISTEN and waits.
      const { rows } = await checker.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %' AND state = 'idle'`,
      );
      listening = rows[0]?.n;
      cleanup.push(stop);
    } finally {
      await checker.end();
      busy.release();
    }
    cleanup.push(async () => {
      await watcher.close();
      await pool.end();
    });
    expect(listening).toBe(1);
    // And so a commit right after it is heard, with no load in between.
    await new TaskRepository({ driver: writer }).save(makeTask({ id: "after-watch" }));
    const deadline = Date.now() + 5_000;
    while (calls === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(calls).toBeGreaterThan(0);
  });
});

describe("PostgresStorageDriver lock", () => {
  it("a change set from another instance waits for the store lock and times out with LOCK_TIMEOUT", async () => {
    const holder = await open();
    const other = await open({ schema: schemas[0], lockTimeoutMs: 300 });
    await holder.acquireLock();
    await expect(other.transact(async () => ({ puts: [makeTask({ id: "blocked" })], logs: [], deletes: [] }))).rejects.toSatisfy((error) =>
      TaskStoreError.hasCode(error, "LOCK_TIMEOUT"),
    );
    // The holder's own writes go through its lock connection: no waiting for itself.
    await holder.saveData({ version: "1.0.0", tasks: [makeTask({ id: "by-holder" })], metadata: { lastUpdated: 1, totalTasks: 1 } });
    await holder.releaseLock();
    await other.transact(async () => ({ puts: [makeTask({ id: "after-release" })], logs: [], deletes: [] }));
    expect((await other.loadData()).tasks.map((task) => task.id)).toEqual(["by-holder", "after-release"]);
  });

  it("describe() gives the location without the password, the size, the last backup and who holds the lock", async () => {
    const url = new URL(server.url);
    url.password = "s3cret-password";
    const driver = await open({ url: url.toString() });
    await new TaskRepository({ driver }).save(makeTask());
    expect((await driver.describe()).lockHolder).toBeNull();
    await driver.backup();
    await driver.acquireLock();
    const description = await driver.describe();
    await driver.releaseLock();
    expect(JSON.stringify(description)).not.toContain("s3cret");
    expect(description.location).toContain(`schema ${schemas[0]}`);
    expect(description.location).toContain(`:${url.port}/postgres`);
    expect(description.sizeBytes).toBeGreaterThan(0);
    expect(description.lastBackupAt).toBeGreaterThan(Date.now() - 60_000);
    expect(description.lockHolder).toMatchObject({ pid: process.pid });
  });
});
