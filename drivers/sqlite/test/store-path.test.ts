import { execFileSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  type Stats,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { EventBus, TaskManager, TaskRepository } from "@taskstore/core";
import Database from "better-sqlite3";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { SQLiteStorageDriver } from "../src/index.js";
import { buildPackage, runFixture, tempDir } from "./helpers.js";

beforeAll(buildPackage);

let cleanup: (() => void) | undefined;
afterEach(() => cleanup?.());

function folder(): string {
  const { dir, remove } = tempDir();
  cleanup = remove;
  return dir;
}

const TEXT = "export PATH=$HOME/bin:$PATH\nalias ll='ls -l'\n".repeat(50);

/** Everything a touch would change: type, mode, owner, size, times, inode, and a regular file's bytes. */
function state(file: string): Record<string, unknown> {
  const describe = (stats: Stats) => ({
    type: stats.isFile()
      ? "file"
      : stats.isDirectory()
        ? "dir"
        : stats.isFIFO()
          ? "fifo"
          : stats.isSymbolicLink()
            ? "link"
            : stats.isCharacterDevice()
              ? "char"
              : "other",
    mode: stats.mode,
    uid: stats.uid,
    size: stats.size,
    mtimeMs: stats.mtimeMs,
    ctimeMs: stats.ctimeMs,
    ino: stats.ino,
    nlink: stats.nlink,
  });
  const link = lstatSync(file);
  const result: Record<string, unknown> = { self: describe(link) };
  if (link.isSymbolicLink()) {
    result.linksTo = readlinkSync(file);
    try {
      result.target = describe(statSync(file));
    } catch {
      result.target = "missing";
    }
  }
  const target = link.isSymbolicLink() ? (existsSync(file) ? statSync(file) : undefined) : link;
  if (target?.isFile()) result.bytes = readFileSync(file).toString("base64");
  if (target?.isDirectory()) result.entries = readdirSync(file).sort();
  return result;
}

/** Records `paths` and the listing of every folder holding them; `check()` expects all of it unchanged. */
function untouched(...paths: string[]): { check(): void } {
  const folders = [...new Set(paths.map((file) => path.dirname(file)))];
  const before = { files: paths.map(state), folders: folders.map((dir) => readdirSync(dir).sort()) };
  return {
    check() {
      expect({ files: paths.map(state), folders: folders.map((dir) => readdirSync(dir).sort()) }).toEqual(before);
    },
  };
}

/** A real backup file of a store holding one task, as an attacker would ship beside a non-store. */
async function backupOfAStore(dir: string): Promise<string> {
  const source = path.join(dir, "elsewhere", "real.db");
  const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: source }) }));
  await manager.loadFromRepository();
  await manager.create({ title: "from the backup" });
  await manager.repository.backup();
  await manager.close();
  return `${source}.backup`;
}

const refused = { code: "VALIDATION", name: "NotAStoreError", message: expect.stringMatching(/^sqlite: .*left untouched/) };

/** Every way in: each is refused with VALIDATION and none of them touches anything. */
async function expectRefusedEverywhere(file: string): Promise<void> {
  const driver = new SQLiteStorageDriver({ path: file, lockTimeoutMs: 500 });
  await expect(driver.initialize()).rejects.toMatchObject(refused);
  await expect(driver.loadData()).rejects.toMatchObject(refused);
  await expect(driver.transact(async () => ({ puts: [], logs: [], deletes: [] }))).rejects.toMatchObject(refused);
  await expect(driver.saveData({ version: "1.0.0", tasks: [], metadata: { lastUpdated: 1, totalTasks: 0 } })).rejects.toMatchObject(
    refused,
  );
  await expect(driver.acquireLock()).rejects.toMatchObject(refused);
  await expect(driver.restore()).rejects.toMatchObject(refused);
  expect(await driver.describe()).toMatchObject({ lockHolder: null, openError: expect.stringContaining("left untouched") });
  await driver.close();

  const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: file }) }));
  await expect(manager.loadFromRepository()).rejects.toMatchObject({ code: "VALIDATION" });
  await expect(manager.create({ title: "never written" })).rejects.toMatchObject({ code: "VALIDATION" });
  await manager.close().catch(() => undefined);
}

describe("a store path that is not a SQLite store is refused with VALIDATION and left untouched", () => {
  it("a text file (0644, with a valid backup beside it): no chmod, no .lock/-wal/-shm, no recovery over it", async () => {
    const dir = folder();
    const file = path.join(dir, "tasks.db");
    writeFileSync(file, TEXT);
    chmodSync(file, 0o644);
    copyFileSync(await backupOfAStore(dir), `${file}.backup`);
    const watch = untouched(file, `${file}.backup`);
    await expectRefusedEverywhere(file);
    watch.check();
  });

  it("a file shorter than the SQLite header is not a store either", async () => {
    const dir = folder();
    const file = path.join(dir, "tasks.db");
    writeFileSync(file, "SQLite");
    chmodSync(file, 0o664);
    const watch = untouched(file);
    await expectRefusedEverywhere(file);
    watch.check();
  });

  it("a folder", async () => {
    const dir = folder();
    const file = path.join(dir, "tasks.db");
    mkdirSync(file, { mode: 0o755 });
    writeFileSync(path.join(file, "inside.txt"), "mine");
    chmodSync(file, 0o755);
    const watch = untouched(file, path.join(file, "inside.txt"));
    await expectRefusedEverywhere(file);
    watch.check();
  });

  it("a FIFO is refused at once, never opened (opening it would block for good): as the store and as its .lock", async () => {
    const dir = folder();
    const fifo = path.join(dir, "tasks.db");
    execFileSync("mkfifo", ["-m", "0644", fifo]);
    const watch = untouched(fifo);
    for (const action of ["initialize", "manager", "acquireLock"]) {
      expect(JSON.parse(await runFixture("open-store.mjs", [fifo, action]))).toMatchObject({ ok: false, ...refused });
    }
    watch.check();

    // A store whose lock file is a FIFO.
    const other = path.join(dir, "other", "tasks.db");
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: other }) }));
    await manager.loadFromRepository();
    await manager.create({ title: "kept" });
    await manager.close();
    rmSync(`${other}.lock`);
    execFileSync("mkfifo", ["-m", "0644", `${other}.lock`]);
    const lockWatch = untouched(other, `${other}.lock`);
    expect(JSON.parse(await runFixture("open-store.mjs", [other, "acquireLock"]))).toMatchObject({
      ok: false,
      ...refused,
      message: expect.stringContaining(`${other}.lock`),
    });
    lockWatch.check();
  });

  it("/dev/null stays a character device with its mode (as root, the driver used to chmod it to 0600 and create /dev/null.lock)", async () => {
    const before = statSync("/dev/null");
    const beside = () => readdirSync("/dev").filter((name) => name.startsWith("null"));
    const besideBefore = beside();
    await expectRefusedEverywhere("/dev/null");
    expect(JSON.parse(await runFixture("open-store.mjs", ["/dev/null", "manager"]))).toMatchObject({ ok: false, ...refused });
    const after = statSync("/dev/null");
    expect(after.isCharacterDevice()).toBe(true);
    expect({ mode: after.mode, rdev: after.rdev, uid: after.uid }).toEqual({ mode: before.mode, rdev: before.rdev, uid: before.uid });
    expect(beside()).toEqual(besideBefore);
  });

  it("a SQLite database of another program (tables of its own, no taskstore schema version): no WAL switch, no chmod, no tables added", async () => {
    const dir = folder();
    const file = path.join(dir, "places.sqlite");
    const theirs = new Database(file);
    theirs.exec("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ada');");
    theirs.close();
    chmodSync(file, 0o644);
    const watch = untouched(file);
    await expectRefusedEverywhere(file);
    watch.check();
    const check = new Database(file, { readonly: true });
    expect(check.prepare("SELECT name FROM sqlite_schema").pluck().all()).toEqual(["users"]);
    check.close();
  });

  it("a SQLite database whose user_version claims a taskstore schema but lacks its tables", async () => {
    const dir = folder();
    const file = path.join(dir, "app.db");
    const theirs = new Database(file);
    theirs.exec("CREATE TABLE settings (k TEXT, v TEXT); PRAGMA user_version = 2;");
    theirs.close();
    const watch = untouched(file);
    await expectRefusedEverywhere(file);
    watch.check();
  });

  it("a symlink to a text file: the link and its target are untouched", async () => {
    const dir = folder();
    const victim = path.join(dir, "home", ".bashrc");
    mkdirSync(path.dirname(victim));
    writeFileSync(victim, TEXT);
    chmodSync(victim, 0o644);
    const link = path.join(dir, "repo", "tasks.db");
    mkdirSync(path.dirname(link));
    symlinkSync("../home/.bashrc", link);
    copyFileSync(await backupOfAStore(dir), `${link}.backup`);
    const watch = untouched(link, victim, `${link}.backup`);
    await expectRefusedEverywhere(link);
    watch.check();
  });

  it("a symlink to nothing: its target is not created", async () => {
    const dir = folder();
    const link = path.join(dir, "tasks.db");
    symlinkSync(path.join(dir, "somewhere", "else.db"), link);
    const watch = untouched(link);
    await expectRefusedEverywhere(link);
    watch.check();
    expect(existsSync(path.join(dir, "somewhere"))).toBe(false);
  });

  it("a -wal beside the store that is a symlink (SQLite would write its log through it) is refused; the link's target is untouched", async () => {
    const dir = folder();
    const file = path.join(dir, "tasks.db");
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: file }) }));
    await manager.loadFromRepository();
    await manager.create({ title: "kept" });
    await manager.close();
    const victim = path.join(dir, "victim.txt");
    writeFileSync(victim, TEXT);
    symlinkSync(victim, `${file}-wal`);
    const watch = untouched(file, `${file}-wal`, victim);
    const driver = new SQLiteStorageDriver({ path: file });
    await expect(driver.initialize()).rejects.toMatchObject({ ...refused, message: expect.stringContaining(`${file}-wal`) });
    await driver.close();
    watch.check();
  });
});

describe("the store lock's file (<path>.lock) is checked like the store", () => {
  for (const [what, make] of [
    ["a text file", (lock: string) => writeFileSync(lock, TEXT)],
    ["a folder", (lock: string) => mkdirSync(lock)],
    [
      "another program's SQLite database",
      (lock: string) => {
        const db = new Database(lock);
        db.exec("CREATE TABLE notes (body TEXT)");
        db.close();
      },
    ],
  ] as const) {
    it(`a lock file that is ${what} is refused with VALIDATION, untouched, and the store's writes are refused rather than queued`, async () => {
      const dir = folder();
      const file = path.join(dir, "tasks.db");
      const first = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: file }) }));
      await first.loadFromRepository();
      const id = await first.create({ title: "kept" });
      await first.close();
      rmSync(`${file}.lock`);
      make(`${file}.lock`);
      if (statSync(`${file}.lock`).isFile()) chmodSync(`${file}.lock`, 0o644);
      const watch = untouched(`${file}.lock`);

      const driver = new SQLiteStorageDriver({ path: file, lockTimeoutMs: 500 });
      await expect(driver.acquireLock()).rejects.toMatchObject({ ...refused, message: expect.stringContaining(`${file}.lock`) });
      const manager = new TaskManager(new EventBus(), new TaskRepository({ driver }));
      await manager.loadFromRepository(); // reads never need the lock
      expect(manager.findById(id)?.title).toBe("kept");
      await expect(manager.create({ title: "not written" })).rejects.toMatchObject({ code: "VALIDATION" });
      await manager.close();
      watch.check();
    });
  }
});

describe("what is a store", () => {
  it("an empty file is taken as a new, empty store (as SQLite and mktemp make one) and made 0600", async () => {
    const dir = folder();
    const file = path.join(dir, "tasks.db");
    writeFileSync(file, "");
    chmodSync(file, 0o644);
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: file }) }));
    await manager.loadFromRepository();
    const id = await manager.create({ title: "in the empty file" });
    await manager.close();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: file }) }));
    await again.loadFromRepository();
    expect(again.findById(id)?.title).toBe("in the empty file");
    await again.close();
  });

  it("a missing file is created 0600 whatever the umask", async () => {
    const dir = folder();
    const file = path.join(dir, "new", "tasks.db");
    const old = process.umask(0o000);
    try {
      const driver = new SQLiteStorageDriver({ path: file });
      await driver.initialize();
      await driver.acquireLock();
      await driver.releaseLock();
      await driver.close();
    } finally {
      process.umask(old);
    }
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(`${file}.lock`).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
  });

  it("a symlink to a store is followed: writes go to its target, the link stays a link, and restore() replaces the target, not the link", async () => {
    const dir = folder();
    const real = path.join(dir, "data", "tasks.db");
    const link = path.join(dir, "tasks.db");
    mkdirSync(path.dirname(real));
    const create = new SQLiteStorageDriver({ path: real }); // a link to nothing is refused: make the store first
    await create.initialize();
    await create.close();
    symlinkSync("data/tasks.db", link);
    const bus = new EventBus();
    const manager = new TaskManager(bus, new TaskRepository({ driver: new SQLiteStorageDriver({ path: link }) }));
    await manager.loadFromRepository();
    const kept = await manager.create({ title: "before the backup" });
    await manager.repository.backup();
    await manager.create({ title: "after the backup" });
    await manager.close();
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(lstatSync(real).isFile()).toBe(true);

    const driver = new SQLiteStorageDriver({ path: link });
    await driver.initialize();
    const result = await driver.restore();
    await driver.close();
    expect(result.movedTo).toMatch(new RegExp(`^${path.join(dir, "data", "tasks.db.aside-")}`));
    expect(readlinkSync(link)).toBe("data/tasks.db");
    const again = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: link }) }));
    await again.loadFromRepository();
    expect(again.list().map((task) => task.id)).toEqual([kept]);
    await again.close();
  });
});
