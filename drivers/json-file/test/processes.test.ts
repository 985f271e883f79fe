import { chmod, lstat, mkdir, readdir, readFile, stat, symlink, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { runWorkload } from "@taskstore/conformance";
import { EventBus, parseStorageData, type StorageData, TaskManager, TaskRepository, TaskStoreError } from "@taskstore/core";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { JSONFileStorageDriver } from "../src/index.js";
import { assertBuilt, type Child, filesMatching, startChild, tempDir, WORKER } from "./helpers.js";

let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});
beforeAll(assertBuilt);

async function store(): Promise<string> {
  const { dir, cleanup } = await tempDir();
  cleanups.push(cleanup);
  return path.join(dir, "tasks.json");
}

/** Reads the store as a fresh driver instance would, checked against core's schema. */
async function loadStore(file: string): Promise<StorageData> {
  const driver = new JSONFileStorageDriver(file);
  await driver.initialize();
  return parseStorageData(await driver.loadData());
}

async function createSharedTask(file: string): Promise<string> {
  const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver(file) }));
  await manager.loadFromRepository();
  const id = await manager.create({ title: "shared" });
  await manager.close();
  return id;
}

function track(child: Child): Child {
  cleanups.push(async () => {
    if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill("SIGKILL");
    await child.exited;
  });
  return child;
}

describe("several processes on one file", () => {
  it("four processes doing 100 mixed operations each lose no change", async () => {
    const file = await store();
    const { reports, tasks, problems } = await runWorkload({
      driver: { module: import.meta.resolve("@taskstore/driver-json-file"), export: "JSONFileStorageDriver", args: [{ path: file }] },
      processes: 4,
      operations: 100,
      concurrency: 4,
    });
    expect(problems).toEqual([]);
    expect(reports).toHaveLength(4);
    // The file itself passes core's schema, and its metadata counts what it holds.
    const data = await loadStore(file);
    expect(data.tasks).toHaveLength(tasks.length);
    expect(data.metadata.totalTasks).toBe(data.tasks.length);
  });
});

describe("crashes", () => {
  it("a writer SIGKILLed at 50 random moments leaves a file that loads and holds every acknowledged change", async () => {
    // Two stores side by side, 25 kills each, to use both cores while children start.
    const lane = async (name: string) => {
      const file = await store();
      const sharedId = await createSharedTask(file);
      const created = new Map<string, string>();
      const appended = new Set<string>();
      for (let round = 0; round < 25; round++) {
        const child = track(startChild(WORKER, ["writer", file, sharedId, `${name}${round}`]));
        // Kill once writing is under way, at a random moment of it.
        await child.waitFor("ack");
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 150));
        child.process.kill("SIGKILL");
        const { signal } = await child.exited;
        expect(signal).toBe("SIGKILL");
        for (const message of child.messages) {
          expect(message.type).not.toBe("persistence-error");
          if (message.type !== "ack") continue;
          if (message.op === "create") created.set(message.id as string, message.title as string);
          else appended.add(message.text as string);
        }
        const data = await loadStore(file); // throws if the file does not load or fails the schema
        const byId = new Map(data.tasks.map((task) => [task.id, task]));
        for (const [id, title] of created) expect(byId.get(id)?.title, `${name}${round}`).toBe(title);
        const lines = new Set(byId.get(sharedId)?.logs.map((entry) => entry.output));
        for (const text of appended) expect(lines.has(text), `${name}${round}: ${text}`).toBe(true);
      }
      return created.size + appended.size;
    };
    const acknowledged = await Promise.all([lane("a"), lane("b")]);
    for (const count of acknowledged) expect(count).toBeGreaterThanOrEqual(25);
  });
});

describe("the lock between processes", () => {
  it("a lock left by a SIGKILLed holder on this host is reclaimed at once, well before the stale period", async () => {
    const file = await store();
    const holder = track(startChild(WORKER, ["hold-lock", file]));
    const { pid } = (await holder.waitFor("locked")) as { pid: number };
    const driver = new JSONFileStorageDriver({ path: file, lockTimeoutMs: 2_000, lockExpiryMs: 60_000 });
    await driver.initialize();
    expect((await driver.describe()).lockHolder).toMatchObject({ pid, host: expect.any(String), since: expect.any(Number) });
    holder.process.kill("SIGKILL");
    await holder.exited;
    await driver.acquireLock(); // a 60 s stale period and a 2 s timeout: only the dead-pid check can get here
    expect((await driver.describe()).lockHolder).toMatchObject({ pid: process.pid });
    await driver.releaseLock();
    expect((await driver.describe()).lockHolder).toBeNull();
  });

  it("a lock held by a live process makes acquireLock() fail with LOCK_TIMEOUT after the configured timeout", async () => {
    const file = await store();
    const holder = track(startChild(WORKER, ["hold-lock", file]));
    const { pid } = (await holder.waitFor("locked")) as { pid: number };
    const driver = new JSONFileStorageDriver({ path: file, lockTimeoutMs: 300 });
    await driver.initialize();
    const error = await driver.acquireLock().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(TaskStoreError.hasCode(error, "LOCK_TIMEOUT")).toBe(true);
    expect((error as Error).message).toContain(`pid ${pid}`);
    // Through a repository the same timeout rejects a write that is not degraded.
    const repository = new TaskRepository({ driver: new JSONFileStorageDriver({ path: file, lockTimeoutMs: 300 }) });
    await expect(repository.saveMany([])).resolves.toBeUndefined();
    await expect(repository.remove("some-id")).rejects.toMatchObject({ code: "LOCK_TIMEOUT" });
    await repository.close();
  });

  it("a lock recorded by another host is taken over only after the stale period", async () => {
    const file = await store();
    const lockDir = path.join(path.dirname(file), ".tasks.lock");
    await mkdir(lockDir);
    await writeFile(
      path.join(lockDir, "holder.json"),
      JSON.stringify({ pid: 999_999_999, host: "another-host", since: Date.now(), token: "t" }),
    );
    const driver = new JSONFileStorageDriver({ path: file, lockTimeoutMs: 300, lockExpiryMs: 2_000 });
    await driver.initialize();
    // Its pid means nothing here: a fresh lock of another host is respected.
    await expect(driver.acquireLock()).rejects.toMatchObject({ code: "LOCK_TIMEOUT" });
    const old = new Date(Date.now() - 60_000);
    await utimes(lockDir, old, old);
    await driver.acquireLock();
    expect((await driver.describe()).lockHolder).toMatchObject({ pid: process.pid });
    await driver.close();
  });

  it("a lock abandoned past the stale period is taken over by exactly one of several processes starting at once", async () => {
    const file = await store();
    const dir = path.dirname(file);
    const lockDir = path.join(dir, ".tasks.lock");
    const journal = path.join(dir, "journal.txt");
    const go = path.join(dir, "go");
    const tags = ["a", "b", "c", "d"];
    const rounds = 12;
    const children = tags.map((tag) => track(startChild(WORKER, ["journal", file, journal, go, tag, String(rounds)])));
    await Promise.all(children.map((child) => child.waitFor("ready")));
    for (let round = 0; round < rounds; round++) {
      // A lock of another host that stopped refreshing long ago; then all four write at once.
      await mkdir(lockDir);
      await writeFile(
        path.join(lockDir, "holder.json"),
        JSON.stringify({ pid: 999_999_999, host: "another-host", since: 0, token: `t${round}` }),
      );
      const old = new Date(Date.now() - 60_000);
      await utimes(lockDir, old, old);
      await writeFile(`${go}.${round}`, String(Date.now() + 100));
      await Promise.all(children.map((child) => child.waitFor(`done-${round}`)));
    }
    const ends = await Promise.all(children.map((child) => child.exited));
    expect(ends.map(({ code, stderr }) => (code === 0 ? "" : stderr))).toEqual(tags.map(() => ""));
    expect(children.flatMap((child) => child.messages.filter((m) => m.type === "persistence-error"))).toEqual([]);
    // Never two holders at once: every "enter" is directly followed by the same process's "leave".
    const lines = (await readFile(journal, "utf8")).trim().split("\n");
    expect(lines).toHaveLength(2 * tags.length * rounds);
    const overlaps = lines.filter((line, i) => i % 2 === 0 && lines[i + 1] !== line.replace("enter", "leave"));
    expect(overlaps).toEqual([]);
    // And no lost update: every process's task of every round is in the file.
    const titles = tags.flatMap((tag) => Array.from({ length: rounds }, (_, round) => `${tag} ${round}`));
    const data = await loadStore(file);
    expect(data.tasks.map((task) => task.title).sort()).toEqual(titles.sort());
  });

  it("a lock lost while held is reported through attach() and never crashes the process; the write is refused", async () => {
    const file = await store();
    const driver = new JSONFileStorageDriver({ path: file, lockExpiryMs: 2_000 });
    const warnings: Error[] = [];
    driver.attach({ warn: (error) => warnings.push(error) });
    await driver.initialize();
    await driver.acquireLock();
    // Someone removes the lock folder from under the holder (a too-eager cleanup, another host).
    const { rm } = await import("node:fs/promises");
    await rm(path.join(path.dirname(file), ".tasks.lock"), { recursive: true });
    await expect.poll(() => warnings.length, { timeout: 5_000, interval: 100 }).toBeGreaterThan(0);
    expect(warnings[0]?.message).toMatch(/json-file: the lock .* was lost/);
    await expect(driver.saveData({ version: "1.0.0", tasks: [], metadata: { lastUpdated: 0, totalTasks: 0 } })).rejects.toMatchObject({
      code: "STORAGE_UNAVAILABLE",
    });
    await driver.releaseLock(); // forgets the lost lock without touching whatever is there now
    await driver.acquireLock();
    await driver.saveData({ version: "1.0.0", tasks: [], metadata: { lastUpdated: 0, totalTasks: 0 } });
    await driver.close();
    expect(await filesMatching(path.dirname(file), /^\.tasks\.lock/)).toEqual([]);
    expect(JSON.parse(await readFile(file, "utf8")).tasks).toEqual([]);
  });
});

describe("broken locks", () => {
  /** Runs the worker's "open" mode (load, then one create) in a child process with the driver's defaults. */
  async function createInChild(file: string, title: string): Promise<Record<string, unknown>[]> {
    const child = track(startChild(WORKER, ["open", file, title]));
    const { code, stderr } = await child.exited;
    expect(code, stderr).toBe(0);
    return child.messages;
  }

  it("a regular file at the lock path is no lock: another process takes it over at once and writes", async () => {
    const file = await store();
    const lockPath = path.join(path.dirname(file), ".tasks.lock");
    await writeFile(lockPath, "left here by some other tool\n");
    // The defaults: a 10 s stale period, a 30 s timeout. Not waiting for either.
    expect(await createInChild(file, "past a file at the lock path")).toEqual([
      { type: "loaded", tasks: 0 },
      { type: "created", id: expect.any(String) },
    ]);
    expect((await loadStore(file)).tasks.map((task) => task.title)).toEqual(["past a file at the lock path"]);
    expect(await filesMatching(path.dirname(file), /^\.tasks\.lock/)).toEqual([]); // taken over, then released
    // In this process too, with a stale period far longer than the timeout.
    await writeFile(lockPath, "again");
    const driver = new JSONFileStorageDriver({ path: file, lockTimeoutMs: 2_000, lockExpiryMs: 60_000 });
    await driver.initialize();
    await driver.acquireLock();
    expect((await lstat(lockPath)).isDirectory()).toBe(true);
    expect((await driver.describe()).lockHolder).toMatchObject({ pid: process.pid });
    await driver.close();
    expect(await filesMatching(path.dirname(file), /^\.tasks\.lock/)).toEqual([]);
  });

  it("a symlink at the lock path is removed, never followed: the file it points to is untouched", async () => {
    const file = await store();
    const dir = path.dirname(file);
    const victim = path.join(dir, "someone-elses-file");
    await writeFile(victim, "not a lock\n");
    await chmod(victim, 0o644);
    const past = new Date(Date.now() - 3_600_000);
    await utimes(victim, past, past);
    const before = await stat(victim);
    await symlink(victim, path.join(dir, ".tasks.lock"));
    const driver = new JSONFileStorageDriver({ path: file, lockTimeoutMs: 2_000, lockExpiryMs: 60_000 });
    await driver.initialize();
    await driver.acquireLock();
    await driver.saveData({ version: "1.0.0", tasks: [], metadata: { lastUpdated: 0, totalTasks: 0 } });
    await driver.close();
    const after = await stat(victim);
    expect([after.ino, after.mode, after.size, after.mtimeMs]).toEqual([before.ino, before.mode, before.size, before.mtimeMs]);
    expect(await readFile(victim, "utf8")).toBe("not a lock\n");
    expect((await readdir(dir)).sort()).toEqual(["someone-elses-file", "tasks.json"]);
  });

  it("a lock folder dated far in the future is stale: another process takes it over instead of timing out for good", async () => {
    const file = await store();
    const lockDir = path.join(path.dirname(file), ".tasks.lock");
    await mkdir(lockDir);
    await writeFile(
      path.join(lockDir, "holder.json"),
      JSON.stringify({ pid: 999_999_999, host: "another-host", since: Date.now(), token: "from-the-future" }),
    );
    const future = new Date(Date.now() + 365 * 24 * 3_600_000);
    await utimes(lockDir, future, future);
    expect(await createInChild(file, "past a lock from the future")).toEqual([
      { type: "loaded", tasks: 0 },
      { type: "created", id: expect.any(String) },
    ]);
    expect((await loadStore(file)).tasks.map((task) => task.title)).toEqual(["past a lock from the future"]);
    expect(await filesMatching(path.dirname(file), /^\.tasks\.lock/)).toEqual([]);
  });
});
