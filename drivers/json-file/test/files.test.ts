import { lstat, mkdir, readdir, readFile, readlink, stat, symlink, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { EventBus, TaskManager, TaskRepository } from "@taskstore/core";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { defaultStorePath, JSONFileStorageDriver } from "../src/index.js";
import { assertBuilt, BASIC_USAGE, runChild, tempDir, WORKER } from "./helpers.js";

let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});
beforeAll(assertBuilt);

async function dir(): Promise<string> {
  const made = await tempDir();
  cleanups.push(made.cleanup);
  return made.dir;
}

const mode = async (file: string) => (await stat(file)).mode & 0o777;

describe("default location", () => {
  it("is ~/.config/kilocode/tasks.json, under $XDG_CONFIG_HOME when set, under %APPDATA% on Windows", () => {
    expect(defaultStorePath({ HOME: "/home/ada" }, "linux")).toBe("/home/ada/.config/kilocode/tasks.json");
    expect(defaultStorePath({ HOME: "/home/ada", XDG_CONFIG_HOME: "/xdg" }, "linux")).toBe("/xdg/kilocode/tasks.json");
    expect(defaultStorePath({ HOME: "/home/ada", XDG_CONFIG_HOME: "relative" }, "linux")).toBe("/home/ada/.config/kilocode/tasks.json");
    expect(defaultStorePath({ HOME: "/Users/ada" }, "darwin")).toBe("/Users/ada/.config/kilocode/tasks.json");
    expect(defaultStorePath({ APPDATA: "C:\\Users\\ada\\AppData\\Roaming" }, "win32")).toContain(path.join("kilocode", "tasks.json"));
  });

  it("the seed's Basic Usage example runs as written against the default path under a temporary HOME", async () => {
    const home = await dir();
    const messages = await runChild(BASIC_USAGE, [], { ...process.env, HOME: home, XDG_CONFIG_HOME: "" });
    const { taskId } = messages[0] as { taskId: string };
    const folder = path.join(home, ".config", "kilocode");
    const data = JSON.parse(await readFile(path.join(folder, "tasks.json"), "utf8"));
    expect(data.tasks).toMatchObject([{ id: taskId, title: "Build awesome feature", description: "Add new persistence layer" }]);
    expect(await mode(folder)).toBe(0o700);
    expect(await mode(path.join(home, ".config"))).toBe(0o700);
    // A second run loads what the first stored.
    await runChild(BASIC_USAGE, [], { ...process.env, HOME: home, XDG_CONFIG_HOME: "" });
    expect(JSON.parse(await readFile(path.join(folder, "tasks.json"), "utf8")).tasks).toHaveLength(2);
  });

  it("the Basic Usage example honours $XDG_CONFIG_HOME", async () => {
    const home = await dir();
    const xdg = path.join(home, "xdg-config");
    await runChild(BASIC_USAGE, [], { ...process.env, HOME: home, XDG_CONFIG_HOME: xdg });
    expect(JSON.parse(await readFile(path.join(xdg, "kilocode", "tasks.json"), "utf8")).tasks).toHaveLength(1);
    await expect(stat(path.join(home, ".config"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("new JSONFileStorageDriver() reads HOME when it is constructed", () => {
    const saved = { HOME: process.env.HOME, XDG_CONFIG_HOME: process.env.XDG_CONFIG_HOME };
    try {
      process.env.HOME = "/tmp/some-home";
      delete process.env.XDG_CONFIG_HOME;
      expect(new JSONFileStorageDriver().path).toBe("/tmp/some-home/.config/kilocode/tasks.json");
      expect(new JSONFileStorageDriver("/custom/path/tasks.json").backupPath).toBe("/custom/path/tasks.backup.json");
      expect(new JSONFileStorageDriver({ path: "/custom/path/tasks.json" }).lockPath).toBe("/custom/path/.tasks.lock");
    } finally {
      for (const [key, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  });
});

describe("file modes and symlinks", () => {
  it("folders are 0700 and files 0600 even under umask 000", async () => {
    const root = await dir();
    const folder = path.join(root, "a", "b");
    await runChild(WORKER, ["umask", path.join(folder, "tasks.json")]);
    expect(await mode(path.join(root, "a"))).toBe(0o700);
    expect(await mode(folder)).toBe(0o700);
    const names = await readdir(folder);
    expect(names.sort()).toEqual(["tasks.backup.json", "tasks.json"]);
    for (const name of names) expect(await mode(path.join(folder, name)), name).toBe(0o600);
  });

  it("a symlinked tasks.json is written through to its target and stays a symlink", async () => {
    const root = await dir();
    await mkdir(path.join(root, "real"));
    await mkdir(path.join(root, "config"));
    const target = path.join(root, "real", "my-tasks.json");
    const link = path.join(root, "config", "tasks.json");
    await symlink(target, link); // dangling until the first write
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver(link) }));
    await manager.loadFromRepository();
    const id = await manager.create({ title: "through the link" });
    await manager.appendOutput(id, "second write replaces the target, not the link");
    await manager.close();
    expect((await lstat(link)).isSymbolicLink()).toBe(true);
    expect(await readlink(link)).toBe(target);
    expect(JSON.parse(await readFile(target, "utf8")).tasks[0].logs).toHaveLength(1);
    expect(await mode(target)).toBe(0o600);
    // No temp file left beside the link or the target.
    expect(await readdir(path.join(root, "real"))).toEqual(["my-tasks.json"]);
    expect((await readdir(path.join(root, "config"))).filter((name) => name.endsWith(".tmp"))).toEqual([]);
  });
});

describe("housekeeping and diagnostics", () => {
  it("describe() reports location, size, last backup time and the lock holder", async () => {
    const file = path.join(await dir(), "tasks.json");
    const driver = new JSONFileStorageDriver(file);
    await driver.initialize();
    expect(await driver.describe()).toMatchObject({ driver: "json-file", location: file, sizeBytes: 0, lockHolder: null });
    await driver.saveData({ version: "1.0.0", tasks: [], metadata: { lastUpdated: 1, totalTasks: 0 } });
    await driver.backup();
    await driver.acquireLock();
    const described = await driver.describe();
    expect(described.sizeBytes).toBe((await stat(file)).size);
    expect(described.lastBackupAt).toBe(Math.round((await stat(path.join(path.dirname(file), "tasks.backup.json"))).mtimeMs));
    expect(described.lockHolder).toMatchObject({ pid: process.pid, since: expect.any(Number), host: expect.any(String) });
    await driver.close();
    expect((await driver.describe()).lockHolder).toBeNull();
  });

  it("initialize() removes temp files of dead processes, and keeps those of live ones", async () => {
    const folder = await dir();
    const file = path.join(folder, "tasks.json");
    const old = new Date(Date.now() - 60_000);
    const dead = path.join(folder, "tasks.json.999999999-0123456789ab.tmp");
    const live = path.join(folder, `tasks.json.${process.pid}-0123456789ab.tmp`);
    const deadLock = path.join(folder, ".tasks.lock.999999999-01234567.new");
    await writeFile(dead, "partial");
    await writeFile(live, "being written");
    await mkdir(deadLock);
    for (const leftover of [dead, live, deadLock]) await utimes(leftover, old, old);
    await new JSONFileStorageDriver(file).initialize();
    expect(await readdir(folder)).toEqual([path.basename(live)]);
  });

  it("the first write of an instance backs up the store it replaces; later ones only once the interval passed", async () => {
    const folder = await dir();
    const file = path.join(folder, "tasks.json");
    const backup = path.join(folder, "tasks.backup.json");
    const data = (n: number) => ({ version: "1.0.0", tasks: [], metadata: { lastUpdated: n, totalTasks: 0 } });
    const first = new JSONFileStorageDriver(file);
    await first.initialize();
    await first.saveData(data(1)); // nothing to back up yet
    await expect(stat(backup)).rejects.toMatchObject({ code: "ENOENT" });
    await first.saveData(data(2));
    expect(JSON.parse(await readFile(backup, "utf8")).metadata.lastUpdated).toBe(1);
    await first.saveData(data(3)); // within the interval: the backup stays
    expect(JSON.parse(await readFile(backup, "utf8")).metadata.lastUpdated).toBe(1);
    const second = new JSONFileStorageDriver(file);
    await second.initialize();
    await second.saveData(data(4)); // a new instance's first write
    expect(JSON.parse(await readFile(backup, "utf8")).metadata.lastUpdated).toBe(3);
    const old = new Date(Date.now() - 11 * 60_000);
    await utimes(backup, old, old);
    await first.saveData(data(5)); // the interval passed
    expect(JSON.parse(await readFile(backup, "utf8")).metadata.lastUpdated).toBe(4);
  });
});
