import { hostname } from "node:os";
import path from "node:path";
import { EventBus, TaskManager, TaskRepository } from "@taskstore/core";
import Database from "better-sqlite3";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { SQLiteStorageDriver } from "../src/index.js";
import { buildPackage, exited, startFixture, tempDir } from "./helpers.js";

beforeAll(buildPackage);

let cleanup: (() => void) | undefined;
afterEach(() => cleanup?.());

function store() {
  const { dir, remove } = tempDir();
  cleanup = remove;
  return path.join(dir, "tasks.db");
}

describe("layout", () => {
  it("appendOutput inserts one log row and leaves the earlier rows as they were; the cap trims the oldest", async () => {
    const file = store();
    const repository = new TaskRepository({ driver: new SQLiteStorageDriver({ path: file }), logCap: 3 });
    const manager = new TaskManager(new EventBus(), repository);
    await manager.loadFromRepository();
    const id = await manager.create({ title: "t" });
    const raw = new Database(file, { readonly: true });
    const rows = () => raw.prepare("SELECT n, output FROM task_logs WHERE task_id = ? ORDER BY n").all(id);
    await manager.appendOutput(id, "one");
    await manager.appendOutput(id, "two");
    expect(rows()).toEqual([
      { n: 0, output: "one" },
      { n: 1, output: "two" },
    ]);
    await manager.appendOutput(id, "three");
    await manager.appendOutput(id, "four");
    await manager.appendOutput(id, "five");
    expect(rows()).toEqual([
      { n: 2, output: "three" },
      { n: 3, output: "four" },
      { n: 4, output: "five" },
    ]);
    expect(raw.prepare("SELECT json_extract(body, '$.droppedLogCount') FROM tasks WHERE id = ?").pluck().get(id)).toBe(2);
    raw.close();
    await manager.close();
  });

  it("unknown fields of the store, its metadata, tasks and log entries round-trip through saveData and transact", async () => {
    const file = store();
    const driver = new SQLiteStorageDriver({ path: file });
    await driver.initialize();
    const task = {
      id: "a",
      title: "a",
      status: "pending" as const,
      progress: { percent: 0 },
      metadata: {},
      createdAt: 1,
      updatedAt: 1,
      children: [],
      logs: [{ timestamp: 1, output: "x", type: "log" as const, level: 3 }],
      newField: [1, 2],
    };
    const data = { version: "1.4.0", tasks: [task], metadata: { lastUpdated: 5, totalTasks: 1, region: "eu" }, topLevel: true };
    await driver.saveData(data);
    // A change through the incremental path keeps what it does not touch.
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver }));
    await manager.loadFromRepository();
    await manager.appendOutput("a", "y");
    await manager.close();
    const reopened = new SQLiteStorageDriver({ path: file });
    await reopened.initialize();
    const loaded = await reopened.loadData();
    expect(loaded).toMatchObject({ version: "1.4.0", topLevel: true, metadata: { region: "eu", totalTasks: 1 } });
    expect(loaded.tasks[0]).toMatchObject({ newField: [1, 2] });
    expect(loaded.tasks[0]?.logs[0]).toEqual({ timestamp: 1, output: "x", type: "log", level: 3 });
    expect(loaded.tasks[0]?.logs[1]?.output).toBe("y");
    await reopened.close();
  });

  it("a caller's better-sqlite3 Database is used as given and left open by close()", async () => {
    const file = store();
    const db = new Database(file);
    const driver = new SQLiteStorageDriver({ database: db, synchronous: "NORMAL" });
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver }));
    await manager.loadFromRepository();
    const id = await manager.create({ title: "mine" });
    await manager.close();
    expect(db.open).toBe(true);
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.prepare("SELECT id FROM tasks").pluck().all()).toEqual([id]);
    db.close();
  });
});

describe("SQLITE_BUSY", () => {
  it("a write waits out another connection's write transaction that outlasts the busy timeout", async () => {
    const file = store();
    const driver = new SQLiteStorageDriver({ path: file, busyTimeoutMs: 20 });
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver }));
    await manager.loadFromRepository();
    const other = new Database(file);
    other.exec("BEGIN IMMEDIATE");
    setTimeout(() => other.exec("COMMIT"), 300);
    const errors: unknown[] = [];
    manager.eventBus.on("persistence:error", (event) => errors.push(event));
    const id = await manager.create({ title: "after the wait" });
    expect(errors).toEqual([]);
    expect(other.prepare("SELECT count(*) FROM tasks WHERE id = ?").pluck().get(id)).toBe(1);
    other.close();
    await manager.close();
  });

  it("a write blocked past lockTimeoutMs fails with LOCK_TIMEOUT, never a raw SQLITE_BUSY", async () => {
    const file = store();
    const driver = new SQLiteStorageDriver({ path: file, busyTimeoutMs: 10, lockTimeoutMs: 200 });
    await driver.initialize();
    const other = new Database(file);
    other.exec("BEGIN IMMEDIATE");
    const failure = driver.transact(async () => ({ puts: [], logs: [], deletes: [] }));
    await expect(failure).rejects.toMatchObject({ code: "LOCK_TIMEOUT", cause: { code: "SQLITE_BUSY" } });
    other.exec("ROLLBACK");
    other.close();
    await driver.close();
  });
});

describe("the store lock", () => {
  it("acquireLock() times out with LOCK_TIMEOUT while another instance holds it, and describe() names the holder", async () => {
    const file = store();
    const holder = new SQLiteStorageDriver({ path: file });
    const waiter = new SQLiteStorageDriver({ path: file, lockTimeoutMs: 150 });
    await holder.initialize();
    await waiter.initialize();
    await holder.acquireLock();
    await expect(waiter.acquireLock()).rejects.toMatchObject({ code: "LOCK_TIMEOUT" });
    expect((await waiter.describe()).lockHolder).toMatchObject({ pid: process.pid, host: hostname() });
    await holder.releaseLock();
    await waiter.acquireLock();
    await waiter.releaseLock();
    expect((await waiter.describe()).lockHolder).toBeNull();
    await holder.close();
    await waiter.close();
  });

  it("while another instance holds the store lock, a TaskManager's change waits and is written only after release; past lockTimeoutMs it fails with LOCK_TIMEOUT", async () => {
    const file = store();
    const holder = new SQLiteStorageDriver({ path: file });
    const patient = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: file }) }));
    const hasty = new TaskManager(
      new EventBus(),
      new TaskRepository({ driver: new SQLiteStorageDriver({ path: file, lockTimeoutMs: 200 }) }),
    );
    const observer = new SQLiteStorageDriver({ path: file });
    await holder.initialize();
    await patient.loadFromRepository();
    await hasty.loadFromRepository();
    const stored = async () => (await observer.loadData()).tasks.map((task) => task.title).sort();
    const errors: { error: { code: string } }[] = [];
    hasty.eventBus.on("persistence:error", (event) => errors.push(event));

    await holder.acquireLock();
    let written = false;
    const waiting = patient.create({ title: "waited" }).then(() => {
      written = true;
    });
    await hasty.create({ title: "timed out" }); // acknowledged in memory, not durable
    expect(errors.map((event) => event.error.code)).toContain("LOCK_TIMEOUT");
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(written).toBe(false);
    expect(await stored()).toEqual([]);

    // The holder itself is not held up by its own lock.
    await holder.transact(async () => ({ puts: [], logs: [], deletes: [], version: "1.0.0" }));
    await holder.releaseLock();
    await waiting;
    await hasty.flush();
    expect(await stored()).toEqual(["timed out", "waited"]);
    await patient.close();
    await hasty.close();
    await holder.close();
    await observer.close();
  });

  it("the lock of a process killed with SIGKILL is taken over at once, not after the stale period", async () => {
    const file = store();
    const driver = new SQLiteStorageDriver({ path: file, lockTimeoutMs: 2_000, lockExpiryMs: 600_000 });
    await driver.initialize();
    let locked: () => void = () => undefined;
    const holding = new Promise<void>((resolve) => {
      locked = resolve;
    });
    const child = startFixture("lock-holder.mjs", [file], (line) => line === "locked" && locked());
    await holding;
    expect((await driver.describe()).lockHolder).toMatchObject({ pid: child.pid });
    child.kill("SIGKILL");
    await exited(child);
    await driver.acquireLock();
    expect((await driver.describe()).lockHolder).toMatchObject({ pid: process.pid });
    await driver.close();
  });

  it("a lock row from another host is honoured until it expires, then taken over", async () => {
    const file = store();
    const driver = new SQLiteStorageDriver({ path: file, lockTimeoutMs: 100 });
    await driver.initialize();
    await driver.describe(); // creates the lock file
    const lockDb = new Database(`${file}.lock`);
    const insert = lockDb.prepare(
      "INSERT OR REPLACE INTO lock (id, owner, pid, host, since, expires) VALUES (1, 'x', 1, 'elsewhere', ?, ?)",
    );
    insert.run(Date.now(), Date.now() + 60_000);
    await expect(driver.acquireLock()).rejects.toMatchObject({ code: "LOCK_TIMEOUT", message: expect.stringContaining("elsewhere") });
    insert.run(Date.now() - 120_000, Date.now() - 1);
    await driver.acquireLock();
    expect(lockDb.prepare("SELECT pid FROM lock").pluck().get()).toBe(process.pid);
    lockDb.close();
    await driver.close();
  });
});
