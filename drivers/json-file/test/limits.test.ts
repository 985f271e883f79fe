import { constants as bufferConstants } from "node:buffer";
import { readdir, readFile, stat, truncate } from "node:fs/promises";
import path from "node:path";
import { EventBus, TaskManager, TaskRepository, TaskStoreError, type ValidationError } from "@taskstore/core";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_MAX_STORE_BYTES, JSONFileStorageDriver, type JSONFileStorageDriverOptions, READ_LIMIT_BYTES } from "../src/index.js";
import { filesMatching, loadStoreData, storeFiles, tempDir } from "./helpers.js";

let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

async function folder(): Promise<string> {
  const made = await tempDir();
  cleanups.push(made.cleanup);
  return made.dir;
}

async function openManager(options: JSONFileStorageDriverOptions): Promise<TaskManager> {
  const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver(options) }));
  cleanups.push(() => manager.close().catch(() => undefined));
  await manager.loadFromRepository();
  return manager;
}

const failure = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: unknown) => error,
  );

function expectTooLarge(error: unknown): void {
  expect(TaskStoreError.hasCode(error, "VALIDATION"), String(error)).toBe(true);
  expect((error as ValidationError).issues).toEqual([expect.objectContaining({ path: [], rule: "max_store_size" })]);
  expect((error as Error).message).toMatch(/over its limit of \d+ bytes \(maxStoreBytes\)/);
}

describe("the store size limit (maxStoreBytes)", () => {
  it("a write that would take the store past maxStoreBytes is refused with VALIDATION (max_store_size) and nothing is written", async () => {
    const dir = await folder();
    const file = path.join(dir, "tasks.json");
    const backup = path.join(dir, "tasks.backup.json");
    const manager = await openManager({ path: file, maxStoreBytes: 4096, backupIntervalMs: 0 });
    const id = await manager.create({ title: "small" });
    await manager.appendOutput(id, "fits");
    const [storeBefore, backupBefore] = [await storeFiles(file), await readFile(backup)];

    expectTooLarge(await failure(manager.appendOutput(id, "x".repeat(5_000))));
    expect(await storeFiles(file)).toEqual(storeBefore); // tasks.json and its journal
    expect(await readFile(backup)).toEqual(backupBefore); // not even the backup was refreshed
    expect((await readdir(dir)).sort()).toEqual(["tasks.backup.json", "tasks.journal.jsonl", "tasks.json"]);
    expect(manager.findById(id)?.logs.map((entry) => entry.output)).toEqual(["fits"]);

    // A saveData() straight to the driver (one of the six required methods) is refused the same way.
    const driver = new JSONFileStorageDriver({ path: file, maxStoreBytes: 4096 });
    await driver.initialize();
    const big = { version: "1.0.0", tasks: [], metadata: { lastUpdated: 0, totalTasks: 0, padding: "y".repeat(5_000) } };
    expectTooLarge(await failure(driver.saveData(big as never)));
    expect(await storeFiles(file)).toEqual(storeBefore);

    // Writes that fit still land.
    await manager.appendOutput(id, "still fits");
    expect((await loadStoreData(file)).tasks[0]?.logs).toHaveLength(2);
  });

  it("a store already over a lowered limit may shrink, but not grow", async () => {
    const file = path.join(await folder(), "tasks.json");
    const first = await openManager({ path: file });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await first.create({ title: `task ${i}`, description: "d".repeat(2_000) }));
    await first.close();
    const size = (await stat(file)).size;
    expect(size).toBeGreaterThan(10_000);

    const manager = await openManager({ path: file, maxStoreBytes: 1_000 });
    await manager.delete(ids[0] as string); // smaller than before, though still over the limit
    expect((await stat(file)).size).toBeLessThan(size);
    const shrunk = await readFile(file);
    expectTooLarge(await failure(manager.create({ title: "one more" })));
    expect(await readFile(file)).toEqual(shrunk);
  });

  it("maxStoreBytes must be a byte count the driver can read back", () => {
    expect(READ_LIMIT_BYTES).toBe(bufferConstants.MAX_STRING_LENGTH);
    expect(DEFAULT_MAX_STORE_BYTES).toBeLessThan(READ_LIMIT_BYTES);
    for (const maxStoreBytes of [0, -1, 1.5, Number.NaN, bufferConstants.MAX_STRING_LENGTH + 1]) {
      expect(() => new JSONFileStorageDriver({ path: "/tmp/x/tasks.json", maxStoreBytes }), String(maxStoreBytes)).toThrow(
        expect.objectContaining({ code: "VALIDATION", issues: [expect.objectContaining({ path: ["maxStoreBytes"] })] }),
      );
    }
    expect(() => new JSONFileStorageDriver({ path: "/tmp/x/tasks.json", maxStoreBytes: bufferConstants.MAX_STRING_LENGTH })).not.toThrow();
  });

  it("a store file larger than the driver can read is CORRUPT_DATA, never read whole, and never recovered over", async () => {
    const dir = await folder();
    const file = path.join(dir, "tasks.json");
    const first = await openManager({ path: file });
    await first.create({ title: "kept in the backup" });
    await first.repository.backup();
    await first.close();
    const backup = await readFile(path.join(dir, "tasks.backup.json"));
    // Past V8's longest string (a sparse file: no disk is used).
    await truncate(file, bufferConstants.MAX_STRING_LENGTH + 1);
    const before = await stat(file);

    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver(file) }));
    cleanups.push(() => manager.close().catch(() => undefined));
    const error = await failure(manager.loadFromRepository());
    expect(TaskStoreError.hasCode(error, "CORRUPT_DATA"), String(error)).toBe(true);
    expect((error as Error).message).toMatch(/more than this driver can read/);
    await expect(manager.repository.restore()).rejects.toMatchObject({ code: "CORRUPT_DATA" });
    await manager.close().catch(() => undefined);

    const after = await stat(file);
    expect([after.ino, after.size, after.mtimeMs]).toEqual([before.ino, before.size, before.mtimeMs]);
    expect(await filesMatching(dir, /corrupt|\.tmp$/)).toEqual([]);
    expect(await readFile(path.join(dir, "tasks.backup.json"))).toEqual(backup);
  });
});
