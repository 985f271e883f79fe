import { execFileSync } from "node:child_process";
import { watch } from "node:fs";
import { open, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { runWorkload } from "@taskstore/conformance";
import {
  EventBus,
  parseStorageData,
  type StorageData,
  type StoredTask,
  type TaskEvents,
  TaskManager,
  TaskRepository,
} from "@taskstore/core";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { JSONFileStorageDriver, type JSONFileStorageDriverOptions } from "../src/index.js";
import { assertBuilt, type Child, filesMatching, loadStoreData, startChild, tempDir, until, WORKER } from "./helpers.js";

// The journal (issue 14): a write appends one record; readers read only the new bytes;
// compaction folds the journal into tasks.json; torn and damaged records; crashes at every step.

let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});
beforeAll(assertBuilt);

const DRIVER_MODULE = import.meta.resolve("@taskstore/driver-json-file");

async function store(): Promise<string> {
  const { dir, cleanup } = await tempDir();
  cleanups.push(cleanup);
  return path.join(dir, "tasks.json");
}

const journalOf = (file: string) => path.join(path.dirname(file), "tasks.journal.jsonl");

function track(child: Child): Child {
  cleanups.push(async () => {
    if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill("SIGKILL");
    await child.exited;
  });
  return child;
}

async function openManager(file: string, options: JSONFileStorageDriverOptions = {}) {
  const driver = new JSONFileStorageDriver({ path: file, ...options });
  const manager = new TaskManager(new EventBus(), new TaskRepository({ driver }));
  cleanups.push(() => manager.close().catch(() => undefined));
  const errors: TaskEvents["persistence:error"][] = [];
  const recovered: TaskEvents["storage:recovered"][] = [];
  manager.eventBus.on("persistence:error", (event) => errors.push(event));
  manager.eventBus.on("storage:recovered", (event) => recovered.push(event));
  await manager.loadFromRepository();
  return { manager, driver, errors, recovered };
}

/** Reads the store as a fresh driver instance would, checked against core's schema. */
async function loadStore(file: string): Promise<StorageData> {
  return parseStorageData(await loadStoreData(file));
}

async function journalLines(file: string): Promise<string[]> {
  const text = await readFile(journalOf(file), "utf8").catch(() => "");
  return text.split("\n").filter((line) => line.length > 0);
}

function makeTask(i: number, now = Date.now()): StoredTask {
  return {
    id: `task-${String(i).padStart(6, "0")}`,
    title: `Task ${i}`,
    description: `Work item ${i}`,
    status: "running",
    progress: { percent: i % 101 },
    metadata: { group: i % 10 },
    createdAt: now,
    updatedAt: now,
    children: [],
    logs: [{ timestamp: now, output: `started ${i}`, type: "info" }],
  };
}

describe("the journal beside tasks.json", () => {
  it("a write appends one record to the journal; tasks.json is left as it is until the journal is folded into it", async () => {
    const file = await store();
    const { manager } = await openManager(file, { compactOnCloseBytes: 0 });
    const id = await manager.create({ title: "first" }); // a new store: tasks.json itself
    const snapshot = await readFile(file);
    await manager.appendOutput(id, "one");
    await manager.appendOutput(id, "two");
    expect(await readFile(file)).toEqual(snapshot);
    const lines = await journalLines(file);
    expect(lines).toHaveLength(3); // the header and one record per write
    expect(JSON.parse(lines[0] as string)).toMatchObject({
      format: "taskstore-journal/1",
      journal: JSON.parse(snapshot.toString()).journal.id,
    });
    expect(lines.slice(1).map((line) => JSON.parse(line).logs[0].entries[0].output)).toEqual(["one", "two"]);
    expect((await loadStore(file)).tasks[0]?.logs.map((entry) => entry.output)).toEqual(["one", "two"]);
  });

  it("a store of today's format (no journal) opens unchanged and is upgraded by its first write", async () => {
    const file = await store();
    const now = Date.now();
    const old = JSON.stringify({ version: "1.0.0", tasks: [makeTask(1, now)], metadata: { lastUpdated: now, totalTasks: 1 } });
    await writeFile(file, old);
    const { manager } = await openManager(file, { compactOnCloseBytes: 0 });
    expect(manager.list().map((task) => task.title)).toEqual(["Task 1"]);
    expect(await readFile(file, "utf8")).toBe(old); // loading writes nothing
    expect(await readdir(path.dirname(file))).toEqual(["tasks.json"]);
    await manager.appendOutput("task-000001", "first write");
    const upgraded = JSON.parse(await readFile(file, "utf8"));
    expect(upgraded.journal).toMatchObject({ id: expect.any(String), seq: 0 });
    expect(upgraded.tasks[0].logs.map((entry: { output: string }) => entry.output)).toEqual(["started 1", "first write"]);
    // The backup is the store as it was.
    const backup = JSON.parse(await readFile(path.join(path.dirname(file), "tasks.backup.json"), "utf8"));
    expect(backup.tasks[0].logs).toHaveLength(1);
    await manager.appendOutput("task-000001", "second write"); // from now on, the journal
    expect(JSON.parse(await readFile(file, "utf8")).tasks[0].logs).toHaveLength(2);
    expect(await journalLines(file)).toHaveLength(2);
    expect((await loadStore(file)).tasks[0]?.logs.map((entry) => entry.output)).toEqual(["started 1", "first write", "second write"]);
  });

  it("after compaction tasks.json alone is a complete JSON document of the seed's shape: jq reads it", async () => {
    const file = await store();
    const { manager } = await openManager(file, { compactionBytes: 2_000, compactionRatio: 0, compactOnCloseBytes: 0 });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await manager.create({ title: `task ${i}` }));
    for (let i = 0; i < 60; i++) await manager.appendOutput(ids[i % 5] as string, `line ${i}`);
    // The journal was folded at least once on the way (each compaction removes it).
    expect((await readFile(journalOf(file)).catch(() => Buffer.alloc(0))).length).toBeLessThan(2_000 + 1_000);
    await manager.close();
    const full = new JSONFileStorageDriver({ path: file, compactionBytes: 0, compactionRatio: 0 });
    const repository = new TaskRepository({ driver: full });
    await repository.apply([
      { type: "append", id: ids[0] as string, entries: [{ timestamp: Date.now(), output: "last", type: "log" }], at: Date.now() },
    ]);
    await repository.close();
    expect(await filesMatching(path.dirname(file), /journal/)).toEqual([]);
    const jq = (filter: string) => execFileSync("jq", ["-r", filter, file], { encoding: "utf8" }).trim();
    expect(jq(".version")).toBe("1.0.0");
    expect(jq(".tasks | length")).toBe("5");
    expect(jq(".metadata.totalTasks")).toBe("5");
    expect(jq("[.tasks[].logs | length] | add")).toBe("61");
    expect(jq(".tasks[0].logs[-1].output")).toBe("last");
    const data = parseStorageData(JSON.parse(await readFile(file, "utf8")));
    expect(data.tasks.map((task) => task.id)).toEqual(ids);
  });
});

describe("torn and damaged records", () => {
  /** A store with one task whose log lines "one", "two", "three" are the journal's last three records, and a backup of "one". */
  async function storeWithJournal(): Promise<{ file: string; id: string }> {
    const file = await store();
    const { manager } = await openManager(file, { compactOnCloseBytes: 0 });
    const id = await manager.create({ title: "journaled" });
    await manager.appendOutput(id, "one");
    await manager.repository.backup();
    await manager.appendOutput(id, "two");
    await manager.appendOutput(id, "three");
    await manager.close();
    expect(await journalLines(file)).toHaveLength(4);
    return { file, id };
  }

  for (const [kind, tear] of [
    ["cut in half by a crash", (last: string) => last.slice(0, Math.floor(last.length / 2))],
    ["complete but damaged (its checksum fails)", (last: string) => `${last.replace('"three"', '"thr3e"')}\n`],
  ] as const) {
    it(`a last record ${kind} is ignored by readers and cleaned up by the next writer, whose write lands`, async () => {
      const { file, id } = await storeWithJournal();
      const text = await readFile(journalOf(file), "utf8");
      const last = text.slice(text.lastIndexOf("\n", text.length - 2) + 1, -1);
      const torn = `${text.slice(0, text.length - last.length - 1)}${tear(last)}`;
      await writeFile(journalOf(file), torn);
      const before = await readFile(file);
      expect((await loadStore(file)).tasks[0]?.logs.map((entry) => entry.output)).toEqual(["one", "two"]);
      expect(await readFile(journalOf(file), "utf8")).toBe(torn); // a reader changes nothing
      expect(await readFile(file)).toEqual(before);

      const { manager, errors, recovered } = await openManager(file, { compactOnCloseBytes: 0 });
      await manager.appendOutput(id, "four");
      expect(errors).toEqual([]);
      expect(recovered).toEqual([]);
      // Cleaned up: the journal was folded into tasks.json, torn bytes and all gone.
      expect(await filesMatching(path.dirname(file), /journal/)).toEqual([]);
      expect(JSON.parse(await readFile(file, "utf8")).tasks[0].logs.map((entry: { output: string }) => entry.output)).toEqual([
        "one",
        "two",
        "four",
      ]);
      await manager.appendOutput(id, "five");
      expect((await loadStore(file)).tasks[0]?.logs.map((entry) => entry.output)).toEqual(["one", "two", "four", "five"]);
    });
  }

  it("a damaged record in the middle is corruption: the store and its journal are kept aside, byte for byte, and the backup restored", async () => {
    const { file, id } = await storeWithJournal();
    const dir = path.dirname(file);
    const damaged = (await readFile(journalOf(file), "utf8")).replace('"output":"two"', '"output":"tw0"');
    await writeFile(journalOf(file), damaged);
    const snapshot = await readFile(file, "utf8");
    await expect(new JSONFileStorageDriver(file).loadData()).rejects.toMatchObject({ code: "CORRUPT_DATA" });

    const { manager, recovered, errors } = await openManager(file);
    expect(recovered).toHaveLength(1);
    expect(errors).toEqual([]);
    expect(manager.findById(id)?.logs.map((entry) => entry.output)).toEqual(["one"]); // the backup
    const [snapshotAside] = await filesMatching(dir, /^tasks\.corrupt-.*\.json$/);
    const [journalAside] = await filesMatching(dir, /^tasks\.journal\.corrupt-.*\.jsonl$/);
    expect(recovered[0]?.result.movedTo).toBe(path.join(dir, snapshotAside as string));
    expect(await readFile(path.join(dir, snapshotAside as string), "utf8")).toBe(snapshot);
    // The journal as it was, damaged record included (with the seal of the recovery after it).
    const keptJournal = await readFile(path.join(dir, journalAside as string), "utf8");
    expect(keptJournal.startsWith(damaged)).toBe(true);
    // The restored store takes writes.
    await manager.appendOutput(id, "after recovery");
    expect((await loadStore(file)).tasks[0]?.logs.map((entry) => entry.output)).toEqual(["one", "after recovery"]);
  });
});

describe("a crash at each step of a compaction (a writer SIGKILLed where it stops itself)", () => {
  const steps: [string, string, boolean][] = [
    ["before its record was appended (nothing written)", "append", false],
    ["after the journal was sealed, before the new tasks.json was renamed into place", "rename-store", true],
    ["after the new tasks.json was renamed into place, before the old journal was removed", "remove-journal", true],
  ];
  for (const [when, stopAt, committed] of steps) {
    it(`killed ${when}: the store loads with every record once, and the next write finishes the job`, async () => {
      const file = await store();
      const { manager } = await openManager(file, { compactOnCloseBytes: 0 });
      const id = await manager.create({ title: "compacted" });
      await manager.appendOutput(id, "a");
      await manager.appendOutput(id, "b");
      await manager.close();
      const writer = track(
        startChild(WORKER, [
          "stall-update",
          file,
          id,
          "set before the crash",
          stopAt,
          "2000",
          JSON.stringify({ compactionBytes: 0, compactionRatio: 0 }),
        ]),
      );
      await writer.waitFor("stopping");
      writer.process.kill("SIGKILL");
      await writer.exited;
      const after = await loadStore(file);
      expect(after.tasks[0]?.logs.map((entry) => entry.output)).toEqual(["a", "b"]);
      expect(after.tasks[0]?.description).toBe(committed ? "set before the crash" : undefined);

      const next = await openManager(file, { compactOnCloseBytes: 0 });
      await next.manager.appendOutput(id, "c");
      expect(next.errors).toEqual([]);
      await next.manager.appendOutput(id, "d");
      const done = await loadStore(file);
      expect(done.tasks[0]?.logs.map((entry) => entry.output)).toEqual(["a", "b", "c", "d"]);
      // Whatever the crash left (a sealed journal, a journal of the old snapshot) is gone or continues the new one.
      const lines = await journalLines(file);
      if (lines.length > 0) expect(JSON.parse(lines[0] as string).journal).toBe(JSON.parse(await readFile(file, "utf8")).journal.id);
      expect(JSON.parse(await readFile(file, "utf8")).tasks[0].title).toBe("compacted");
    });
  }
});

describe("crashes and concurrency with the journal folded often", () => {
  it("a writer SIGKILLed at 50 random moments while it appends and compacts loses no acknowledged write and applies none twice", async () => {
    const options = JSON.stringify({ compactionBytes: 3_000, compactionRatio: 0 });
    const lane = async (name: string) => {
      const file = await store();
      const { manager } = await openManager(file);
      const sharedId = await manager.create({ title: "shared" });
      await manager.close();
      const created = new Map<string, string>();
      const appended = new Set<string>();
      for (let round = 0; round < 25; round++) {
        const child = track(startChild(WORKER, ["writer", file, sharedId, `${name}${round}`, options]));
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
        const data = await loadStore(file); // throws if it does not load or fails the schema
        const byId = new Map(data.tasks.map((task) => [task.id, task]));
        for (const [id, title] of created) expect(byId.get(id)?.title, `${name}${round}`).toBe(title);
        const titles = data.tasks.map((task) => task.title);
        expect(new Set(titles).size, `${name}${round}: a task created twice`).toBe(titles.length);
        const lines = byId.get(sharedId)?.logs.map((entry) => entry.output) ?? [];
        expect(new Set(lines).size, `${name}${round}: a line appended twice`).toBe(lines.length);
        for (const text of appended) expect(lines.includes(text), `${name}${round}: ${text}`).toBe(true);
      }
      return created.size + appended.size;
    };
    const acknowledged = await Promise.all([lane("a"), lane("b")]);
    for (const count of acknowledged) expect(count).toBeGreaterThanOrEqual(25);
  });

  it("four processes making 250 mixed calls each lose nothing while the journal is folded into tasks.json many times", async () => {
    const file = await store();
    // Counts the compactions: each one gives tasks.json a new marker.
    const markers = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const handle = await open(file).catch(() => undefined);
        if (handle) {
          const { size } = await handle.stat();
          const tail = Buffer.alloc(Math.min(size, 200));
          await handle.read(tail, 0, tail.length, size - tail.length).catch(() => undefined);
          await handle.close();
          const found = /"journal":\{"id":"([0-9a-f-]+)"/.exec(tail.toString("latin1"));
          if (found) markers.add(found[1] as string);
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    const { reports, tasks, problems } = await runWorkload({
      driver: {
        module: DRIVER_MODULE,
        export: "JSONFileStorageDriver",
        args: [{ path: file, compactionBytes: 8_000, compactionRatio: 0 }],
      },
      processes: 4,
      operations: 250,
      concurrency: 4,
    });
    watching = false;
    await watcher;
    expect(problems).toEqual([]);
    expect(reports).toHaveLength(4);
    expect(markers.size, "compactions seen during the run").toBeGreaterThanOrEqual(10);
    const data = await loadStore(file);
    expect(data.tasks).toHaveLength(tasks.length);
  });
});

describe("the lock kept between writes", () => {
  it("a writer keeps the lock between its writes, and lets it go as soon as another instance waits for it", async () => {
    const file = await store();
    const { manager } = await openManager(file);
    const id = await manager.create({ title: "busy" });
    let writes = 0;
    let stop = false;
    const writer = (async () => {
      while (!stop) {
        await manager.appendOutput(id, `line ${writes}`);
        writes++;
      }
    })();
    // Each acquisition builds a `.tasks.lock.<pid>-<id>.new` folder: counted as the writer goes.
    const built = new Set<string>();
    const watcher = watch(path.dirname(file), (_event, name) => {
      if (typeof name === "string" && /^\.tasks\.lock\.\d+-[0-9a-f]+\.new$/.test(name)) built.add(name);
    });
    cleanups.push(async () => watcher.close());
    await until(() => writes >= 200, "the writer to be under way");
    expect(built.size, "lock acquisitions for 200 writes").toBeLessThan(40);
    // Another instance, with a timeout far below the writer's 100 ms cap on keeping the lock: its note gets it the lock.
    const other = new JSONFileStorageDriver({ path: file, lockTimeoutMs: 2_000 });
    cleanups.push(() => other.close());
    await other.acquireLock();
    const whileHeld = writes;
    const holder = (await other.describe()).lockHolder as { pid: number } | null;
    expect(holder?.pid).toBe(process.pid);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(writes, "the writer waits while the other instance holds the lock").toBeLessThanOrEqual(whileHeld + 1);
    await other.releaseLock();
    await until(() => writes >= whileHeld + 20, "the writer to go on");
    stop = true;
    await writer;
    const lines = (await loadStore(file)).tasks[0]?.logs.map((entry) => entry.output) ?? [];
    expect(lines).toEqual(Array.from({ length: writes }, (_, i) => `line ${i}`));
  });
});

describe("readers follow the journal", () => {
  it("another process's TaskManager sees a change through watch(), reading only the journal's new bytes", async () => {
    const file = await store();
    const seeder = new JSONFileStorageDriver(file);
    await seeder.initialize();
    const now = Date.now();
    const tasks = Array.from({ length: 1_000 }, (_, i) => makeTask(i, now));
    await seeder.saveData({ version: "1.0.0", tasks, metadata: { lastUpdated: now, totalTasks: tasks.length } });
    await seeder.close();
    const snapshotSize = (await stat(file)).size;

    const { manager, driver } = await openManager(file);
    const read = async () => (await driver.describe()).bytesRead as { snapshot: number; journal: number };
    const start = await read();
    expect(start).toEqual({ snapshot: snapshotSize, journal: 0 });

    for (const title of ["made by another process", "and another"]) {
      const journalBefore = (await stat(journalOf(file)).catch(() => undefined))?.size ?? 0;
      const before = await read();
      const child = track(startChild(WORKER, ["open", file, title]));
      const { code, stderr } = await child.exited;
      expect(code, stderr).toBe(0);
      const created = child.messages.find((message) => message.type === "created")?.id as string;
      expect(created).toBeDefined();
      // Told by watch(), not asked: the manager refreshes by itself (a bounded wait, not a timing).
      await until(() => manager.findById(created) !== undefined, "the manager to see the other process's task", 10_000);
      expect(manager.findById(created)?.title).toBe(title);
      const after = await read();
      const journalAfter = (await stat(journalOf(file))).size;
      expect(after.snapshot - before.snapshot, "tasks.json read again").toBe(0);
      expect(after.journal - before.journal, "bytes of the journal read").toBe(journalAfter - journalBefore);
      expect(journalAfter - journalBefore).toBeLessThan(2_000); // the record, not the store (~200 KB)
    }
  });
});
