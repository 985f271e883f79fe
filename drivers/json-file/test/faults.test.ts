import { execFileSync } from "node:child_process";
import { appendFile, mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { EventBus, type StoredTask, type TaskEvents, TaskManager, TaskRepository } from "@taskstore/core";
import { startFaultyFolder } from "@taskstore/test-services";
import { afterEach, describe, expect, it } from "vitest";
import { JSONFileStorageDriver } from "../src/index.js";
import { loadStoreData, storeFiles, tempDir } from "./helpers.js";

// Real faults, injected from outside the process. These tests run as root here (CI too), and
// root ignores permission bits, so the faults are ones that stop root as well: an immutable
// folder (`chattr +i`) and a full file system (a small tmpfs). Without them the tests fail.

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

async function openManager(file: string) {
  const repository = new TaskRepository({ driver: new JSONFileStorageDriver(file), retry: { initialDelayMs: 20, maxDelayMs: 100 } });
  const manager = new TaskManager(new EventBus(), repository);
  cleanups.push(() => manager.close().catch(() => undefined));
  const errors: TaskEvents["persistence:error"][] = [];
  const restored: TaskEvents["persistence:restored"][] = [];
  manager.eventBus.on("persistence:error", (event) => errors.push(event));
  manager.eventBus.on("persistence:restored", (event) => restored.push(event));
  await manager.loadFromRepository();
  return { manager, errors, restored };
}

/** Runs while the fault is on: operations succeed in memory, the error is emitted, nothing reaches the file. */
async function duringFault(file: string, manager: TaskManager, errors: TaskEvents["persistence:error"][], existing: string) {
  const before = await storeFiles(file);
  const id = await manager.create({ title: "made while storage fails" });
  await manager.appendOutput(existing, "x".repeat(20_000));
  await manager.update(existing, { title: "renamed while storage fails" });
  expect(manager.findById(id)?.title).toBe("made while storage fails");
  expect(manager.findById(existing)?.title).toBe("renamed while storage fails");
  expect(errors.length).toBeGreaterThan(0);
  expect(errors[0]?.error.code).toBe("STORAGE_UNAVAILABLE");
  expect(errors[0]?.error.message).toMatch(/^json-file: /);
  await expect(manager.flush()).rejects.toMatchObject({ code: "STORAGE_UNAVAILABLE" });
  expect(await storeFiles(file)).toEqual(before);
  const leftovers = (await readdir(path.dirname(file))).filter((name) => /\.(tmp|new|old)$/.test(name));
  expect(leftovers).toEqual([]);
  return id;
}

async function expectAllWritten(file: string, existing: string, created: string) {
  const { tasks } = await loadStoreData(file); // tasks.json with its journal
  expect(tasks.map((task) => task.id)).toEqual([existing, created]);
  expect(tasks[0]?.title).toBe("renamed while storage fails");
  expect(tasks[0]?.logs).toHaveLength(1);
}

describe("a save that fails", () => {
  it("an immutable folder (EPERM): the manager works in memory, emits persistence:error, and writes everything once the folder is writable", async () => {
    const dir = await folder();
    const file = path.join(dir, "tasks.json");
    const { manager, errors, restored } = await openManager(file);
    const existing = await manager.create({ title: "stored before the fault" });
    // The folder and every file in it: the journal is appended to in place, which an immutable folder alone allows.
    const frozen = [dir, ...(await readdir(dir)).map((name) => path.join(dir, name))];
    execFileSync("chattr", ["+i", ...frozen]);
    cleanups.push(async () => execFileSync("chattr", ["-i", ...frozen]));
    const created = await duringFault(file, manager, errors, existing);
    execFileSync("chattr", ["-i", ...frozen]);
    await manager.flush();
    expect(restored.length).toBeGreaterThan(0);
    await expectAllWritten(file, existing, created);
  });

  it("a full file system (ENOSPC): no partial file is left, and everything is written once space is freed", async () => {
    const dir = await folder();
    const mount = path.join(dir, "small");
    await mkdir(mount);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mount]);
    cleanups.push(async () => execFileSync("umount", [mount]));
    const file = path.join(mount, "tasks.json");
    const { manager, errors } = await openManager(file);
    const existing = await manager.create({ title: "stored before the fault" });
    const filler = path.join(mount, "filler");
    await fill(filler);
    const created = await duringFault(file, manager, errors, existing);
    expect(errors.some((event) => (event.error.cause as { code?: string } | undefined)?.code === "ENOSPC")).toBe(true);
    await rm(filler);
    await manager.flush();
    await expectAllWritten(file, existing, created);
  });
});

describe("a folder that cannot be synced after a new file is put in it (EIO from a FUSE file system)", () => {
  it("the write stands and is applied once; the failed folder sync is reported as a warning", async () => {
    const faulty = await startFaultyFolder();
    cleanups.push(() => faulty.stop());
    const file = path.join(faulty.path, "store", "tasks.json");
    const { manager, errors } = await openManager(file);
    const warnings: Error[] = [];
    manager.eventBus.on("storage:warning", (event) => warnings.push(event.error));
    const id = await manager.create({ title: "on a failing disk" }); // writes tasks.json
    await faulty.failFolderSync(true);
    await manager.appendOutput(id, "first"); // makes the journal (a new name in the folder), after a backup
    await manager.appendOutput(id, "second"); // appended to it: no folder to sync
    await manager.flush();
    // Reported as written: no error, no retry, so no second copy of a line.
    expect(errors).toEqual([]);
    expect(warnings.map((error) => error.message)).toEqual([
      expect.stringMatching(/tasks\.backup\.json was written, but its folder could not be synced/),
      expect.stringMatching(/tasks\.journal\.jsonl was written, but its folder could not be synced/),
    ]);
    expect((await loadStoreData(file)).tasks[0]?.logs.map((entry) => entry.output)).toEqual(["first", "second"]);

    // A new tasks.json renamed into place (here a whole-store save) the same way.
    const driver = new JSONFileStorageDriver(file);
    const driverWarnings: Error[] = [];
    driver.attach({ warn: (error) => driverWarnings.push(error) });
    await driver.initialize();
    const data = await driver.loadData();
    await driver.saveData({ ...data, tasks: data.tasks.map((task) => ({ ...task, title: "saved whole" })) });
    await driver.close();
    await faulty.failFolderSync(false);
    expect(driverWarnings.map((error) => error.message)).toContainEqual(
      expect.stringMatching(/tasks\.json was written, but its folder could not be synced/),
    );
    const stored = JSON.parse(await readFile(file, "utf8")); // tasks.json alone holds the store now
    expect(stored.tasks[0].title).toBe("saved whole");
    expect(stored.tasks[0].logs.map((entry: { output: string }) => entry.output)).toEqual(["first", "second"]);
    await manager.close();
  });
});

describe("a file system with coarse stamps that reuses inode numbers (FUSE)", () => {
  it("a newer store with the identity of the one an instance last wrote is read, not mistaken for it", async () => {
    const faulty = await startFaultyFolder();
    cleanups.push(() => faulty.stop());
    await faulty.coarseStamps(true);
    const file = path.join(faulty.path, "store", "tasks.json");
    const a = new TaskRepository({ driver: new JSONFileStorageDriver(file) });
    const b = new TaskRepository({ driver: new JSONFileStorageDriver(file) });
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const now = Date.now();
    const task = (percent: number): StoredTask => ({
      id: "t1",
      title: "same size either way",
      status: "running",
      progress: { percent },
      metadata: {},
      createdAt: now,
      updatedAt: now,
      children: [],
      logs: [],
    });
    await a.save(task(10));
    const written = await stat(file, { bigint: true });
    // Another instance replaces the store with one of the same size: same reported inode and stamps.
    await b.save(task(20));
    const replaced = await stat(file, { bigint: true });
    expect([replaced.ino, replaced.size, replaced.mtimeNs]).toEqual([written.ino, written.size, written.mtimeNs]);
    await a.apply([{ type: "append", id: "t1", entries: [{ timestamp: now, output: "by a", type: "log" }], at: now }]);
    const stored = (await loadStoreData(file)).tasks[0];
    expect(stored?.progress.percent).toBe(20); // b's change survives a's write
    expect(stored?.logs.map((entry) => entry.output)).toEqual(["by a"]);
  });
});

/** Appends to `file` until the file system is full. */
async function fill(file: string): Promise<void> {
  const chunk = Buffer.alloc(4096, 1);
  for (;;) {
    try {
      await appendFile(file, chunk);
    } catch (error) {
      if ((error as { code?: string }).code === "ENOSPC") return;
      throw error;
    }
  }
}
