import { EventBus, type StoredTask, TaskManager, TaskRepository, TaskStoreError } from "@taskstore/core";
import { type PostgresServer, startPostgres } from "@taskstore/test-services";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildPackage, driverOn, freshSchema, runFixture, startFixture } from "./helpers.js";

let server: PostgresServer;
beforeAll(async () => {
  buildPackage();
  // Its own server with fsync on: the outage test stops it with `-m immediate` (a crash).
  server = await startPostgres({ dedicated: true, fsync: true });
});
afterAll(() => server?.stop());

async function loadTasks(schema: string): Promise<Map<string, StoredTask>> {
  const driver = driverOn(server.url, schema);
  await driver.initialize();
  const data = await driver.loadData();
  await driver.close();
  return new Map(data.tasks.map((task) => [task.id, task]));
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe("PostgreSQL stores across processes", () => {
  // The multi-process workload is the conformance suite's ("several processes on one store").

  it("two processes starting together on a new store run its migrations once", async () => {
    const schema = freshSchema();
    const at = String(Date.now() + 500);
    const outputs = await Promise.all([1, 2, 3].map(() => runFixture("migrator.mjs", [server.url, schema, at])));
    expect(outputs.map((out) => out.trim())).toEqual(["migrated", "migrated", "migrated"]);
    const driver = driverOn(server.url, schema);
    await driver.initialize();
    const { MIGRATIONS } = await import("@taskstore/driver-postgres");
    const pg = (await import("pg")).default;
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    const { rows } = await client.query(`SELECT version FROM "${schema}".migrations ORDER BY version`);
    await client.end();
    await driver.close();
    expect(rows.map((row) => row.version)).toEqual(MIGRATIONS.map((migration) => migration.version));
  });

  it("a change made by another process reaches this process's TaskManager through LISTEN/NOTIFY, without refresh()", async () => {
    const schema = freshSchema();
    const bus = new EventBus();
    const manager = new TaskManager(bus, new TaskRepository({ driver: driverOn(server.url, schema) }));
    await manager.loadFromRepository();
    const id = (await runFixture("notify-writer.mjs", [server.url, schema, "made elsewhere"])).trim();
    await until(() => manager.findById(id)?.title === "made elsewhere", "the other process's task");
    await runFixture("notify-writer.mjs", [server.url, schema, "appended elsewhere", id]);
    await until(() => manager.findById(id)?.logs.at(-1)?.output === "appended elsewhere", "the other process's log entry");
    await manager.close();
  });

  it("the lock of a process killed while holding it is released by the server", async () => {
    const schema = freshSchema();
    let locked!: () => void;
    const holding = new Promise<void>((resolve) => {
      locked = resolve;
    });
    const child = startFixture("lock-holder.mjs", [server.url, schema], (line) => line === "locked" && locked());
    await holding;
    const waiter = driverOn(server.url, schema, { lockTimeoutMs: 300 });
    const patient = driverOn(server.url, schema, { lockTimeoutMs: 10_000 });
    try {
      await waiter.initialize();
      await expect(waiter.acquireLock()).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "LOCK_TIMEOUT"));
      child.kill("SIGKILL");
      await patient.acquireLock();
      await patient.releaseLock();
    } finally {
      child.kill("SIGKILL");
      await patient.close();
      await waiter.close();
    }
  });
});

describe("a server stopped with pg_ctl -m immediate and started again mid-run", () => {
  it("while the server is down calls fail with STORAGE_UNAVAILABLE, and the same driver works after the restart", async () => {
    const schema = freshSchema();
    const warnings: Error[] = [];
    const driver = driverOn(server.url, schema, { connectTimeoutMs: 1_000 });
    driver.attach({ warn: (error) => warnings.push(error) });
    await driver.initialize();
    await driver.loadData();
    await server.kill();
    try {
      await expect(driver.loadData()).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "STORAGE_UNAVAILABLE"));
      await expect(driver.transact(async () => ({ puts: [], logs: [], deletes: [] }))).rejects.toSatisfy((error) =>
        TaskStoreError.hasCode(error, "STORAGE_UNAVAILABLE"),
      );
      // The pool's idle connection was closed by the server: reported, not thrown at the process.
      await until(() => warnings.length > 0, "a warning about the lost connection");
    } finally {
      await server.restart();
    }
    expect((await driver.loadData()).tasks).toEqual([]);
    await driver.close();
  });

  it("the driver reconnects, TaskManager degrades and recovers, and every acknowledged change is stored", async () => {
    const schema = freshSchema();
    const bus = new EventBus();
    const events: string[] = [];
    bus.on("persistence:error", ({ error }) => events.push(`error ${error.code}`));
    bus.on("persistence:restored", () => events.push("restored"));
    const repository = new TaskRepository({
      driver: driverOn(server.url, schema, { connectTimeoutMs: 1_000 }),
      retry: { maxDelayMs: 200 },
    });
    const manager = new TaskManager(bus, repository);
    await manager.loadFromRepository();
    const id = await manager.create({ title: "written through an outage" });

    const acknowledged: string[] = [];
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        await manager.appendOutput(id, `entry ${i}`);
        acknowledged.push(`entry ${i}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    await until(() => acknowledged.length >= 20, "writes before the outage");
    await server.kill();
    const atKill = acknowledged.length;
    await until(() => events.includes("error STORAGE_UNAVAILABLE") && acknowledged.length >= atKill + 20, "degraded writes");
    await server.restart();
    await until(() => events.includes("restored"), "persistence:restored", 30_000);
    const atRestart = acknowledged.length;
    await until(() => acknowledged.length >= atRestart + 20, "writes after the restart");
    stop = true;
    await writer;
    await manager.flush();
    await manager.close();

    const stored = (await loadTasks(schema)).get(id);
    const outputs = stored?.logs.map((entry) => entry.output) ?? [];
    // Every acknowledged entry exactly once, in order: a commit whose reply the crash cut off is
    // confirmed through the transaction log, never applied a second time.
    expect(outputs).toEqual(acknowledged);
    expect(events[0]).toBe("error STORAGE_UNAVAILABLE");
    expect(events.at(-1)).toBe("restored");
  });
});
