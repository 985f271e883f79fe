import path from "node:path";
import { EventBus, TaskManager, TaskRepository, TaskStoreError } from "@taskstore/core";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { DB_SCHEMA_VERSION, SQLiteStorageDriver } from "../src/index.js";
import { tempDir } from "./helpers.js";

let cleanup: (() => void) | undefined;
afterEach(() => cleanup?.());

const parent = {
  id: "parent-1",
  title: "parent",
  status: "running",
  progress: { percent: 40, currentStep: "build" },
  metadata: JSON.parse('{"nested":{"__proto__":{"polluted":true},"list":[1,"two"]}}'),
  createdAt: 1_700_000_000_000,
  updatedAt: 1_700_000_000_500,
  children: ["child-1"],
  logs: [
    { timestamp: 1_700_000_000_100, output: "first", type: "stdout" },
    { timestamp: 1_700_000_000_200, output: "zweite ✓", type: "stderr", source: "cc", color: "red" },
  ],
  futureField: { added: "in 1.1" },
};
const child = {
  id: "child-1",
  title: "child",
  status: "pending",
  parentId: "parent-1",
  progress: { percent: 0 },
  metadata: {},
  createdAt: 1_700_000_000_050,
  updatedAt: 1_700_000_000_050,
  children: [],
  logs: [],
};

/** A database file exactly as schema version 1 of this driver wrote it: each task whole, as JSON. */
function writeSchemaV1(file: string): void {
  const db = new Database(file);
  db.exec(`
    PRAGMA journal_mode = WAL;
    CREATE TABLE tasks (id TEXT PRIMARY KEY, data TEXT NOT NULL);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    PRAGMA user_version = 1;
  `);
  // "parent-1" sorts after "child-1": only insertion order puts the parent first.
  const insert = db.prepare("INSERT INTO tasks (id, data) VALUES (?, ?)");
  insert.run(parent.id, JSON.stringify(parent));
  insert.run(child.id, JSON.stringify(child));
  db.prepare("INSERT INTO meta (key, value) VALUES (?, ?)").run("version", "1.2.0");
  db.close();
}

describe("schema migrations", () => {
  it("a database file of schema version 1 is migrated: logs move to their own table, nothing is lost", async () => {
    const { dir, remove } = tempDir();
    cleanup = remove;
    const file = path.join(dir, "tasks.db");
    writeSchemaV1(file);

    const driver = new SQLiteStorageDriver({ path: file });
    await driver.initialize();
    const data = await driver.loadData();
    expect(data.version).toBe("1.2.0");
    expect(data.tasks).toEqual([parent, child]);
    const nested = (data.tasks[0] as unknown as { metadata: { nested: object } }).metadata.nested;
    expect(Object.hasOwn(nested, "__proto__")).toBe(true);
    expect(Object.getPrototypeOf(nested)).toBe(Object.prototype);
    await driver.close();

    const raw = new Database(file, { readonly: true });
    expect(raw.pragma("user_version", { simple: true })).toBe(DB_SCHEMA_VERSION);
    expect(raw.prepare("SELECT count(*) FROM task_logs WHERE task_id = 'parent-1'").pluck().get()).toBe(2);
    expect(raw.prepare("SELECT json_extract(body, '$.logs') FROM tasks WHERE id = 'parent-1'").pluck().get()).toBeNull();
    const indexes = raw.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks'").pluck().all();
    expect(indexes).toEqual(expect.arrayContaining(["tasks_parent", "tasks_status"]));
    raw.close();
  });

  it("a migrated store takes appends through TaskManager after the migrated log", async () => {
    const { dir, remove } = tempDir();
    cleanup = remove;
    const file = path.join(dir, "tasks.db");
    writeSchemaV1(file);
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: file }) }));
    await manager.loadFromRepository();
    await manager.appendOutput("parent-1", "third");
    await manager.close();
    const driver = new SQLiteStorageDriver({ path: file });
    await driver.initialize();
    const stored = (await driver.loadData()).tasks[0];
    expect(stored?.logs.map((entry) => entry.output)).toEqual(["first", "zweite ✓", "third"]);
    expect((stored as unknown as { futureField: unknown }).futureField).toEqual({ added: "in 1.1" });
    await driver.close();
  });

  /** A database file whose schema version is one past the driver's. */
  function newerDatabase(): string {
    const { dir, remove } = tempDir();
    cleanup = remove;
    const file = path.join(dir, "tasks.db");
    const db = new Database(file);
    db.pragma(`user_version = ${DB_SCHEMA_VERSION + 1}`);
    db.close();
    return file;
  }

  it("a database of a newer schema version than the driver knows is refused, not rewritten", async () => {
    const file = newerDatabase();
    const driver = new SQLiteStorageDriver({ path: file });
    await expect(driver.initialize()).rejects.toMatchObject({
      code: "VERSION_UNSUPPORTED",
      message: expect.stringMatching(/^sqlite: .*newer.*upgrade @taskstore\/driver-sqlite/),
    });
    await driver.close();
    const again = new Database(file);
    expect(again.pragma("user_version", { simple: true })).toBe(DB_SCHEMA_VERSION + 1);
    again.close();
  });

  it("a TaskManager's write to a database of a newer schema fails with VERSION_UNSUPPORTED and is not kept to retry as an outage", async () => {
    const repository = new TaskRepository({ driver: new SQLiteStorageDriver({ path: newerDatabase() }) });
    const manager = new TaskManager(new EventBus(), repository);
    await expect(manager.create({ title: "never written" })).rejects.toSatisfy((error) =>
      TaskStoreError.hasCode(error, "VERSION_UNSUPPORTED"),
    );
    expect(repository.pendingChanges()).toEqual([]);
    await manager.close();
  });
});
