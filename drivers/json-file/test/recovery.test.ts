import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { EventBus, type TaskEvents, TaskManager, TaskRepository } from "@taskstore/core";
import { afterEach, describe, expect, it } from "vitest";
import { JSONFileStorageDriver } from "../src/index.js";
import { filesMatching, loadStoreData, tempDir } from "./helpers.js";

let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

async function openManager(file: string): Promise<{ manager: TaskManager; recovered: TaskEvents["storage:recovered"][] }> {
  const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver(file) }));
  cleanups.push(() => manager.close().catch(() => undefined));
  const recovered: TaskEvents["storage:recovered"][] = [];
  manager.eventBus.on("storage:recovered", (event) => recovered.push(event));
  await manager.loadFromRepository();
  return { manager, recovered };
}

/** A store with two tasks and a backup of them; returns the file, its folder and the ids. */
async function storeWithBackup(): Promise<{ file: string; dir: string; ids: string[] }> {
  const { dir, cleanup } = await tempDir();
  cleanups.push(cleanup);
  const file = path.join(dir, "tasks.json");
  const { manager } = await openManager(file);
  const ids = [await manager.create({ title: "first" }), await manager.create({ title: "second" })];
  await manager.appendOutput(ids[0] as string, "kept in the backup");
  await manager.repository.backup();
  await manager.close();
  return { file, dir, ids };
}

const corruptions: [string, (good: string) => string][] = [
  ["empty", () => ""],
  ["truncated", (good) => good.slice(0, Math.floor(good.length / 2))],
  ["not JSON", () => "<<<this is not json>>>\n"],
  ["failing the schema", () => JSON.stringify({ version: "1.0.0", tasks: [{ id: "bad id!", title: 42 }], metadata: {} })],
];

describe("recovery of an unreadable main file", () => {
  for (const [kind, corrupt] of corruptions) {
    it(`a main file that is ${kind} is moved aside as tasks.corrupt-<time>.json and the backup restored`, async () => {
      const { file, dir, ids } = await storeWithBackup();
      const bad = corrupt(await readFile(file, "utf8"));
      await writeFile(file, bad);
      const { manager, recovered } = await openManager(file);
      expect(manager.list().map((task) => task.id)).toEqual(ids);
      expect(manager.findById(ids[0] as string)?.logs.map((entry) => entry.output)).toEqual(["kept in the backup"]);
      expect(recovered).toHaveLength(1);
      const aside = await filesMatching(dir, /^tasks\.corrupt-.*\.json$/);
      expect(aside).toHaveLength(1);
      expect(recovered[0]?.result).toEqual({
        movedTo: path.join(dir, aside[0] as string),
        restoredFrom: path.join(dir, "tasks.backup.json"),
      });
      expect(await readFile(path.join(dir, aside[0] as string), "utf8")).toBe(bad);
      // The restored store takes writes again.
      await manager.create({ title: "after recovery" });
      await manager.close();
      expect(JSON.parse(await readFile(file, "utf8")).tasks).toHaveLength(3);
    });
  }

  it("with no backup, loading throws CORRUPT_DATA and the main file is left byte for byte", async () => {
    const { dir, cleanup } = await tempDir();
    cleanups.push(cleanup);
    const file = path.join(dir, "tasks.json");
    await writeFile(file, '{"version":"1.0.0","tasks":[{"id":');
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver(file) }));
    await expect(manager.loadFromRepository()).rejects.toMatchObject({ code: "CORRUPT_DATA" });
    // A write is refused too: never an empty store over the damaged one.
    await expect(manager.repository.save({ ...sampleTask() })).rejects.toMatchObject({ code: "CORRUPT_DATA" });
    await manager.close().catch(() => undefined);
    expect(await readFile(file, "utf8")).toBe('{"version":"1.0.0","tasks":[{"id":');
    expect(await filesMatching(dir, /^tasks\./)).toEqual(["tasks.json"]);
  });

  it("a backup that is itself unreadable is not restored: CORRUPT_DATA, both files untouched", async () => {
    const { file, dir } = await storeWithBackup();
    await writeFile(file, "not json");
    await writeFile(path.join(dir, "tasks.backup.json"), '{"version":"1.0.0","tasks":"nope"}');
    const driver = new JSONFileStorageDriver(file);
    await driver.initialize();
    await expect(driver.restore()).rejects.toMatchObject({ code: "CORRUPT_DATA" });
    expect(await readFile(file, "utf8")).toBe("not json");
    expect(await filesMatching(dir, /corrupt/)).toEqual([]);
  });

  it("backup() of a main file that is not JSON throws CORRUPT_DATA and keeps the previous backup", async () => {
    const { file, dir } = await storeWithBackup();
    const before = await readFile(path.join(dir, "tasks.backup.json"), "utf8");
    await writeFile(file, "{ broken");
    const driver = new JSONFileStorageDriver(file);
    await driver.initialize();
    await expect(driver.backup()).rejects.toMatchObject({ code: "CORRUPT_DATA" });
    expect(await readFile(path.join(dir, "tasks.backup.json"), "utf8")).toBe(before);
  });
});

describe("legacy todo files", () => {
  it("a legacy todo array is migrated on load and the original kept as tasks.legacy.json", async () => {
    const { dir, cleanup } = await tempDir();
    cleanups.push(cleanup);
    const file = path.join(dir, "tasks.json");
    const legacy = JSON.stringify([
      { text: "buy milk", completed: false },
      { text: "ship it", completed: true },
    ]);
    await writeFile(file, legacy);
    const { manager } = await openManager(file);
    expect(manager.list().map((task) => [task.title, task.status])).toEqual([
      ["buy milk", "pending"],
      ["ship it", "completed"],
    ]);
    expect(await readFile(path.join(dir, "tasks.legacy.json"), "utf8")).toBe(legacy);
    expect(JSON.parse(await readFile(file, "utf8")).version).toBe("1.0.0");
    // Later backups replace tasks.backup.json, never the legacy original.
    await manager.create({ title: "new" });
    await manager.repository.backup();
    expect(await readFile(path.join(dir, "tasks.legacy.json"), "utf8")).toBe(legacy);
  });
});

function sampleTask() {
  const now = Date.now();
  return {
    id: "task-1",
    title: "t",
    status: "pending" as const,
    progress: { percent: 0 },
    metadata: {},
    createdAt: now,
    updatedAt: now,
    children: [],
    logs: [],
  };
}

describe("a store damaged while a manager runs", () => {
  it("a file damaged under a running manager is recovered by the next write, which then lands", async () => {
    const { file, dir, ids } = await storeWithBackup();
    const { manager, recovered } = await openManager(file);
    const errors: TaskEvents["persistence:error"][] = [];
    manager.eventBus.on("persistence:error", (event) => errors.push(event));
    await writeFile(file, "{ damaged by another program");
    await manager.appendOutput(ids[1] as string, "written after recovery");
    expect(errors).toEqual([]);
    expect(recovered).toHaveLength(1); // moved aside and restored from the backup before the write
    const stored = await loadStoreData(file); // tasks.json with its journal
    expect(stored.tasks[1]?.logs.map((entry) => entry.output)).toEqual(["written after recovery"]);
    expect(await filesMatching(dir, /^tasks\.corrupt-/)).toHaveLength(1);
  });
});
