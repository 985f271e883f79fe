import { execFileSync } from "node:child_process";
import { chmod, lstat, mkdir, readdir, readFile, readlink, stat, symlink, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { EventBus, type StoredTask, TaskManager, TaskRepository } from "@taskstore/core";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { defaultStorePath, JSONFileStorageDriver } from "../src/index.js";
import { assertBuilt, BASIC_USAGE, filesMatching, runChild, startChild, tempDir, WORKER } from "./helpers.js";

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
    // Closed before the folder is removed: a lock kept for a next write is let go a moment later.
    await first.close();
    await second.close();
  });
});

/** What must not change about a file the driver does not own: its bytes, mode, owner, identity and stamps. */
async function fingerprint(file: string) {
  const st = await lstat(file);
  const bytes = st.isFile() ? (await readFile(file)).toString("base64") : null;
  return { bytes, mode: st.mode, uid: st.uid, gid: st.gid, ino: st.ino, rdev: st.rdev, size: st.size, mtimeMs: st.mtimeMs };
}

/** Runs the worker's "open" mode (load, then one create) on `file` in a child process; killed if the test ends first. */
async function openInChild(file: string): Promise<Record<string, unknown>[]> {
  const child = startChild(WORKER, ["open", file]);
  cleanups.push(async () => {
    if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill("SIGKILL");
    await child.exited;
  });
  const { code, signal, stderr } = await child.exited;
  expect({ code, signal }, stderr).toEqual({ code: 0, signal: null });
  return child.messages;
}

function plantedStore(): string {
  const now = Date.now();
  const task: StoredTask = {
    id: "planted",
    title: "written by whoever shipped the backup",
    status: "pending",
    progress: { percent: 0 },
    metadata: {},
    createdAt: now,
    updatedAt: now,
    children: [],
    logs: [],
  };
  return JSON.stringify({ version: "1.0.0", tasks: [task], metadata: { lastUpdated: now, totalTasks: 1 } });
}

describe("a symlinked tasks.json whose target is not a store (a cloned repository's tasks.json -> ../../.bashrc)", () => {
  const targets: [string, string][] = [
    ["a shell profile", "export PATH=$HOME/bin:$PATH\nalias ll='ls -l'\n"],
    ["an empty file", ""],
    [
      "JSON with a version and tasks that is no store (shaped like a VS Code tasks.json)",
      JSON.stringify({ version: "1.0.0", tasks: [{ label: "build", type: "shell", command: "make" }] }),
    ],
  ];
  for (const [kind, content] of targets) {
    it(`with ${kind} as the target and a crafted backup beside the link: load, restore and writes are CORRUPT_DATA, and nothing is touched`, async () => {
      const root = await dir();
      const home = path.join(root, "home");
      const repo = path.join(home, "src", "repo");
      await mkdir(repo, { recursive: true });
      const victim = path.join(home, ".bashrc");
      await writeFile(victim, content);
      await chmod(victim, 0o644);
      const link = path.join(repo, "tasks.json");
      await symlink("../../.bashrc", link);
      const planted = plantedStore();
      await writeFile(path.join(repo, "tasks.backup.json"), planted);
      const before = await fingerprint(victim);

      const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver(link) }));
      cleanups.push(() => manager.close().catch(() => undefined));
      await expect(manager.loadFromRepository()).rejects.toMatchObject({ code: "CORRUPT_DATA" });
      await expect(manager.repository.restore()).rejects.toMatchObject({
        code: "CORRUPT_DATA",
        message: expect.stringMatching(/symlink .*never restored through it/),
      });
      const now = Date.now();
      const task: StoredTask = {
        id: "t1",
        title: "t",
        status: "pending",
        progress: { percent: 0 },
        metadata: {},
        createdAt: now,
        updatedAt: now,
        children: [],
        logs: [],
      };
      await expect(manager.repository.save(task)).rejects.toMatchObject({ code: "CORRUPT_DATA" });
      // A saveData() straight to the driver (one of the six required methods) is refused too.
      const driver = new JSONFileStorageDriver(link);
      await driver.initialize();
      await expect(driver.saveData({ version: "1.0.0", tasks: [], metadata: { lastUpdated: 0, totalTasks: 0 } })).rejects.toMatchObject({
        code: "CORRUPT_DATA",
      });
      await manager.close().catch(() => undefined);

      expect(await fingerprint(victim)).toEqual(before);
      expect((await readdir(home)).sort()).toEqual([".bashrc", "src"]); // nothing made beside the target
      expect((await readdir(repo)).sort()).toEqual(["tasks.backup.json", "tasks.json"]); // nor beside the link
      expect(await readlink(link)).toBe("../../.bashrc");
      expect(await readFile(path.join(repo, "tasks.backup.json"), "utf8")).toBe(planted);
    });
  }

  const damages: [string, (good: string) => string][] = [
    ["truncated", (good) => good.slice(0, Math.floor(good.length / 2))],
    ["failing the schema", () => JSON.stringify({ version: "1.0.0", tasks: [{ id: "bad id!", title: 42 }], metadata: {} })],
  ];
  for (const [kind, damage] of damages) {
    it(`a symlinked store that is ${kind} is still recovered through the link: kept aside beside the link, the backup written to the target`, async () => {
      const root = await dir();
      await mkdir(path.join(root, "real"));
      await mkdir(path.join(root, "config"));
      const target = path.join(root, "real", "my-tasks.json");
      const link = path.join(root, "config", "tasks.json");
      await symlink(target, link);
      const first = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver(link) }));
      await first.loadFromRepository();
      const ids = [await first.create({ title: "one" }), await first.create({ title: "two" })];
      await first.repository.backup();
      await first.close();
      const backup = await readFile(path.join(root, "config", "tasks.backup.json"), "utf8");
      const bad = damage(await readFile(target, "utf8"));
      await writeFile(target, bad);

      const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver(link) }));
      cleanups.push(() => manager.close().catch(() => undefined));
      await manager.loadFromRepository();
      expect(manager.list().map((task) => task.id)).toEqual(ids);
      await manager.close();
      expect((await lstat(link)).isSymbolicLink()).toBe(true);
      expect(await readFile(target, "utf8")).toBe(backup);
      expect(await readdir(path.join(root, "real"))).toEqual(["my-tasks.json"]);
      const aside = await filesMatching(path.join(root, "config"), /^tasks\.corrupt-.*\.json$/);
      expect(aside).toHaveLength(1);
      expect(await readFile(path.join(root, "config", aside[0] as string), "utf8")).toBe(bad);
    });
  }
});

describe("store paths that are not regular files", () => {
  it("a FIFO as the store is refused with VALIDATION and never opened: the process ends, the FIFO and its folder are untouched", async () => {
    const folder = await dir();
    const fifo = path.join(folder, "tasks.json");
    execFileSync("mkfifo", ["-m", "0644", fifo]);
    const before = await fingerprint(fifo);
    const messages = await openInChild(fifo);
    expect(messages).toEqual([expect.objectContaining({ type: "load-failed", code: "VALIDATION" })]);
    expect(messages[0]?.message).toMatch(/is a FIFO .*not a regular file/);
    expect(await fingerprint(fifo)).toEqual(before);
    expect((await lstat(fifo)).isFIFO()).toBe(true);
    expect(await readdir(folder)).toEqual(["tasks.json"]);
  });

  it("a symlinked tasks.json pointing at a FIFO is refused the same way, link and FIFO untouched", async () => {
    const folder = await dir();
    const fifo = path.join(folder, "pipe");
    execFileSync("mkfifo", ["-m", "0600", fifo]);
    const link = path.join(folder, "tasks.json");
    await symlink(fifo, link);
    const before = await fingerprint(fifo);
    const messages = await openInChild(link);
    expect(messages).toEqual([expect.objectContaining({ type: "load-failed", code: "VALIDATION" })]);
    expect(await fingerprint(fifo)).toEqual(before);
    expect(await readlink(link)).toBe(fifo);
    expect((await readdir(folder)).sort()).toEqual(["pipe", "tasks.json"]);
  });

  it("a FIFO at the backup path is refused before anything is written: the store and the FIFO stay as they were", async () => {
    const folder = await dir();
    const file = path.join(folder, "tasks.json");
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver(file) }));
    await manager.loadFromRepository();
    await manager.create({ title: "stored" });
    await manager.close();
    const fifo = path.join(folder, "tasks.backup.json");
    execFileSync("mkfifo", ["-m", "0600", fifo]);
    const [store, pipe] = [await fingerprint(file), await fingerprint(fifo)];
    const messages = await openInChild(file);
    expect(messages).toEqual([expect.objectContaining({ type: "load-failed", code: "VALIDATION" })]);
    expect(messages[0]?.message).toContain(fifo);
    expect(await fingerprint(file)).toEqual(store);
    expect(await fingerprint(fifo)).toEqual(pipe);
    expect((await readdir(folder)).sort()).toEqual(["tasks.backup.json", "tasks.json"]);
  });

  for (const device of ["/dev/zero", "/dev/null"]) {
    it(`${device} as the store is refused with VALIDATION: the device is unchanged and nothing is made in its folder`, async () => {
      const related = async () => (await readdir(path.dirname(device))).filter((name) => name.includes(path.basename(device))).sort();
      const [before, namesBefore] = [await fingerprint(device), await related()];
      const messages = await openInChild(device);
      expect(messages).toEqual([expect.objectContaining({ type: "load-failed", code: "VALIDATION" })]);
      expect(messages[0]?.message).toMatch(/is a character device/);
      const after = await fingerprint(device);
      expect({ ...after, mtimeMs: 0 }).toEqual({ ...before, mtimeMs: 0 }); // a device's stamps move when it is used by anyone
      expect(await related()).toEqual(namesBefore); // no .zero.lock, zero.backup.json, temp files
    });
  }
});
