import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { EventBus, TaskManager, TaskRepository } from "@taskstore/core";
import { afterEach, describe, expect, it } from "vitest";
import { SQLiteStorageDriver } from "../src/index.js";
import { tempDir } from "./helpers.js";

let cleanup: (() => void) | undefined;
afterEach(() => cleanup?.());

function open(file: string) {
  const bus = new EventBus();
  const recovered: unknown[] = [];
  bus.on("storage:recovered", (event) => recovered.push(event));
  const manager = new TaskManager(bus, new TaskRepository({ driver: new SQLiteStorageDriver({ path: file }) }));
  return { manager, recovered };
}

/** A store with `count` tasks, backed up after the first `backedUp`, closed (so the WAL is checkpointed into the file). */
async function makeStore(file: string, count: number, backedUp: number | undefined): Promise<string[]> {
  const { manager } = open(file);
  await manager.loadFromRepository();
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    ids.push(await manager.create({ title: `task ${i}`, description: "x".repeat(200) }));
    if (i + 1 === backedUp) await manager.repository.backup();
  }
  await manager.close();
  return ids;
}

/**
 * Keeps the SQLite header's first 16 bytes ("SQLite format 3\0": this file is a database, so it is
 * ours) and overwrites the rest of the header: SQLite finds "file is not a database". A file that
 * never began with those 16 bytes is not a store at all, and is refused untouched (store-path.test.ts).
 */
function damageHeader(file: string) {
  const bytes = readFileSync(file);
  for (let i = 16; i < 100; i++) bytes[i] = (i * 7919) % 251;
  writeFileSync(file, bytes);
}

/** Cuts the file in half, as a copy that stopped part-way would. */
const truncate = (file: string) => writeFileSync(file, readFileSync(file).subarray(0, Math.floor(readFileSync(file).length / 2)));

/** Overwrites every page but the first (the schema) with garbage: the file is still "a database", but malformed. */
function malform(file: string) {
  const bytes = readFileSync(file);
  for (let i = 4096; i < bytes.length; i++) bytes[i] = (i * 7919) % 251;
  writeFileSync(file, bytes);
}

describe("recovery of a damaged database file", () => {
  for (const [name, damage] of [
    ["has a damaged header (not a database)", damageHeader],
    ["is malformed", malform],
    ["is truncated", truncate],
  ] as const) {
    it(`a file that ${name} is moved aside, the backup restored, and storage:recovered emitted`, async () => {
      const { dir, remove } = tempDir();
      cleanup = remove;
      const file = path.join(dir, "tasks.db");
      const ids = await makeStore(file, 120, 100);
      damage(file);
      const damaged = readFileSync(file);

      const { manager, recovered } = open(file);
      await manager.loadFromRepository();
      expect(recovered).toHaveLength(1);
      expect(manager.list().map((task) => task.id)).toEqual(ids.slice(0, 100));
      const aside = readdirSync(dir).filter((name) => name.startsWith("tasks.db.aside-") && !/-(wal|shm)$/.test(name));
      expect(aside).toHaveLength(1);
      expect(readFileSync(path.join(dir, aside[0] as string))).toEqual(damaged);
      // The restored store takes writes again.
      const next = await manager.create({ title: "after recovery" });
      await manager.close();
      const { manager: again } = open(file);
      await again.loadFromRepository();
      expect(again.findById(next)?.title).toBe("after recovery");
      await again.close();
    });
  }

  it("a damaged file without a backup fails with CORRUPT_DATA and is left untouched", async () => {
    const { dir, remove } = tempDir();
    cleanup = remove;
    const file = path.join(dir, "tasks.db");
    await makeStore(file, 10, undefined);
    damageHeader(file);
    const before = readFileSync(file);
    const { manager, recovered } = open(file);
    await expect(manager.loadFromRepository()).rejects.toMatchObject({ code: "CORRUPT_DATA" });
    await manager.close();
    expect(recovered).toEqual([]);
    expect(readFileSync(file)).toEqual(before);
    expect(readdirSync(dir).filter((name) => name.includes("aside"))).toEqual([]);
  });

  it("loadData on a store whose header is damaged throws CorruptDataError, after initialize() succeeded", async () => {
    const { dir, remove } = tempDir();
    cleanup = remove;
    const file = path.join(dir, "tasks.db");
    await makeStore(file, 3, undefined);
    damageHeader(file);
    const driver = new SQLiteStorageDriver({ path: file });
    await driver.initialize();
    await expect(driver.loadData()).rejects.toMatchObject({ code: "CORRUPT_DATA", message: expect.stringMatching(/^sqlite: /) });
    await expect(driver.restore()).rejects.toMatchObject({ code: "CORRUPT_DATA" });
    expect(existsSync(file)).toBe(true);
    await driver.close();
  });

  it("backup() of a malformed database fails and keeps the last good backup", async () => {
    const { dir, remove } = tempDir();
    cleanup = remove;
    const file = path.join(dir, "tasks.db");
    await makeStore(file, 120, 120);
    const good = readFileSync(`${file}.backup`);
    malform(file);
    const driver = new SQLiteStorageDriver({ path: file });
    await driver.initialize();
    await expect(driver.backup()).rejects.toMatchObject({ code: "CORRUPT_DATA" });
    expect(readFileSync(`${file}.backup`)).toEqual(good);
    await driver.close();
  });
});
