import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  EventBus,
  IncrementalBackups,
  MemoryStorageDriver,
  type StoredTask,
  TaskManager,
  TaskRepository,
  type TaskRepositoryOptions,
  TaskStoreError,
} from "@taskstore/core";
import { afterEach, describe, expect, it } from "vitest";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function setup(options: Omit<TaskRepositoryOptions, "driver"> = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), "taskstore-chain-"));
  dirs.push(dir);
  const store = randomUUID();
  const open = (more: Omit<TaskRepositoryOptions, "driver"> = options) =>
    new TaskRepository({ driver: new MemoryStorageDriver({ store }), ...more });
  const repository = open();
  const manager = new TaskManager(new EventBus(), repository);
  await manager.loadFromRepository();
  return { dir, repository, manager, open, chain: path.join(dir, "chain") };
}

const sorted = (tasks: StoredTask[]) => [...tasks].sort((a, b) => (a.id < b.id ? -1 : 1));
const code = (name: string) => (error: unknown) => TaskStoreError.hasCode(error, name as never);

describe("incremental backups (core, memory driver)", () => {
  it("a base, then points holding only what changed; each point reads back as the store was", async () => {
    const { repository, manager, chain } = await setup({ logCap: 5 });
    const backups = new IncrementalBackups(repository, { dir: chain });
    const snapshots: [string, StoredTask[]][] = [];
    const snap = async () => {
      const { point, written } = await backups.backup();
      expect(written).toBe(true);
      snapshots.push([point.id, await repository.loadAll()]);
      return point;
    };
    const a = await manager.create({ title: "a", metadata: JSON.parse('{"__proto__":{"x":1},"n":[1,{"b":null}]}') });
    const b = await manager.create({ title: "b", parentId: a });
    for (let i = 0; i < 4; i++) await manager.appendOutput(a, `line ${i}`);
    const base = await snap();
    expect(base).toMatchObject({ kind: "base", parent: null, tasks: 2, changed: 2, removed: 0 });
    for (let i = 4; i < 9; i++) await manager.appendOutput(a, `line ${i}`); // past the cap: the oldest are dropped
    const appended = await snap();
    expect(appended).toMatchObject({ kind: "delta", parent: base.id, tasks: 2, changed: 1, removed: 0 });
    await manager.update(b, { title: "b renamed", metadata: { deep: { er: [1, 2, 3] } } });
    const c = await manager.create({ title: "c" });
    await manager.linkParentChild(c, b);
    await snap();
    await manager.delete(a);
    const removed = await snap();
    expect(removed).toMatchObject({ removed: 1 });
    for (const [id, tasks] of snapshots) expect(sorted((await backups.read(id)).data.tasks)).toEqual(sorted(tasks));
    expect((await backups.read(appended.id)).data.tasks.find((task) => task.id === a)?.logs.map((l) => l.output)).toEqual([
      "line 4",
      "line 5",
      "line 6",
      "line 7",
      "line 8",
    ]);
    // The proto key stays data, never a prototype.
    const first = (await backups.read(base.id)).data.tasks.find((task) => task.id === a) as StoredTask;
    expect(Object.hasOwn(first.metadata, "__proto__")).toBe(true);
    expect(Object.getPrototypeOf(first.metadata)).toBe(Object.prototype);
  });

  it("an append to a task with a long log costs a point its new entry, not the log", async () => {
    const { repository, manager, chain } = await setup({ logCap: 2_000 });
    const backups = new IncrementalBackups(repository, { dir: chain });
    const id = await manager.create({ title: "long" });
    await repository.apply([
      {
        type: "append",
        id,
        at: Date.now(),
        entries: Array.from({ length: 2_000 }, (_, i) => ({ timestamp: i, type: "stdout" as const, output: `build output line ${i}` })),
      },
    ]);
    const base = (await backups.backup()).point;
    await manager.appendOutput(id, "one more"); // at the cap: the oldest entry goes, and is counted
    const point = (await backups.backup()).point;
    expect(base.bytes).toBeGreaterThan(50_000);
    expect(point.bytes).toBeLessThan(1_000);
    expect((await backups.read(point.id)).data.tasks[0]?.logs.at(-1)?.output).toBe("one more");
    expect((await backups.read(point.id)).data.tasks[0]?.logs).toHaveLength(2_000);
  });

  it("the chain's folders are 0700 and its files 0600", async () => {
    const { repository, manager, chain } = await setup();
    await manager.create({ title: "x" });
    await new IncrementalBackups(repository, { dir: path.join(chain, "nested") }).backup();
    for (const dir of [chain, path.join(chain, "nested")]) expect((await stat(dir)).mode & 0o777).toBe(0o700);
    for (const name of await readdir(path.join(chain, "nested"))) {
      expect((await stat(path.join(chain, "nested", name))).mode & 0o777).toBe(0o600);
    }
  });

  it("a store that has not changed gets no new point", async () => {
    const { repository, manager, chain } = await setup();
    const backups = new IncrementalBackups(repository, { dir: chain });
    await manager.create({ title: "x" });
    const first = await backups.backup();
    const again = await backups.backup();
    expect(again).toEqual({ point: first.point, written: false, pruned: [] });
    expect(await backups.list()).toHaveLength(1);
  });

  it("keep N lists the last N points; what they are built on is folded into a base once it pays, or at prune()", async () => {
    const { repository, manager, chain } = await setup();
    const backups = new IncrementalBackups(repository, { dir: chain, keep: 3 });
    const id = await manager.create({ title: "t" });
    const expected = new Map<string, StoredTask[]>();
    const pruned: string[] = [];
    const files = async () => (await readdir(chain)).filter((name) => !name.startsWith("manifest-"));
    for (let i = 0; i < 12; i++) {
      await manager.appendOutput(id, `line ${i}`);
      if (i % 3 === 2) await manager.create({ title: `extra ${i}` });
      const result = await backups.backup();
      pruned.push(...result.pruned);
      expected.set(result.point.id, await repository.loadAll());
      expect(await backups.list()).toHaveLength(Math.min(i + 1, 3));
      // Hidden points never outnumber the kept ones (plus the base they hang on).
      expect((await files()).length).toBeLessThanOrEqual(7);
    }
    expect(pruned).toHaveLength(9);
    for (const point of await backups.list()) {
      expect(sorted((await backups.read(point.id)).data.tasks)).toEqual(sorted(expected.get(point.id) ?? []));
    }
    for (const gone of pruned) await expect(backups.read(gone)).rejects.toSatisfy(code("NOT_FOUND"));
    expect(await backups.prune()).toEqual([]);
    const points = await backups.list();
    expect(points.map((point) => point.kind)).toEqual(["base", "delta", "delta"]);
    for (const point of points) expect(sorted((await backups.read(point.id)).data.tasks)).toEqual(sorted(expected.get(point.id) ?? []));
    // Only the files the manifest lists (and the manifest before it) are left.
    expect((await files()).sort()).toEqual(points.map((point) => point.file).sort());
    expect((await readdir(chain)).filter((name) => name.startsWith("manifest-"))).toHaveLength(2);
  });

  it("maxAgeMs keeps the points younger than it (and always the newest); with keep, either rule keeps a point", async () => {
    const { repository, manager, chain } = await setup();
    let now = 1_000_000_000_000;
    const id = await manager.create({ title: "t" });
    const byAge = new IncrementalBackups(repository, { dir: chain, maxAgeMs: 10_000, now: () => now });
    for (let i = 0; i < 5; i++) {
      await manager.appendOutput(id, `line ${i}`);
      await byAge.backup();
      now += 4_000;
    }
    // Made at 0, 4, 8, 12, 16 s; the last backup (at 16 s) kept those within 10 s of it.
    const ages = async () => (await byAge.list()).map((point) => point.createdAt - 1_000_000_000_000);
    expect(await ages()).toEqual([8_000, 12_000, 16_000]);
    expect(await byAge.prune()).toHaveLength(1); // now 20 s
    expect(await ages()).toEqual([12_000, 16_000]);
    now += 60_000;
    expect(await byAge.prune()).toHaveLength(1);
    expect(await byAge.list()).toHaveLength(1); // the newest stays, however old
    const both = new IncrementalBackups(repository, { dir: chain, maxAgeMs: 1_000, keep: 2, now: () => now });
    await manager.appendOutput(id, "more");
    await both.backup();
    expect(await both.list()).toHaveLength(2);
  });

  it("restore(id) writes the point's store and keeps the replaced store as a new point", async () => {
    const { repository, manager, chain, open } = await setup();
    const backups = new IncrementalBackups(repository, { dir: chain });
    const kept = await manager.create({ title: "kept" });
    const point = (await backups.backup()).point;
    const before = await repository.loadAll();
    await manager.create({ title: "after the point" });
    await manager.appendOutput(kept, "after the point too");
    const replaced = await repository.loadAll();
    const result = await backups.restore(point.id.slice(0, 12));
    expect(result.point.id).toBe(point.id);
    expect(result.tasks).toBe(1);
    expect(result.keptAs.note).toBe(`before restoring ${point.id}`);
    expect(await open().loadAll()).toEqual(before);
    expect(sorted((await backups.read(result.keptAs.id)).data.tasks)).toEqual(sorted(replaced));
    // The restore is undone by restoring the point that kept the replaced store.
    const undo = await backups.restore(result.keptAs.id);
    expect(sorted(await open().loadAll())).toEqual(sorted(replaced));
    expect(undo.keptAs.id).not.toBe(result.keptAs.id);
  });

  it("points that are not there, prefixes that name several, and options out of range are refused", async () => {
    const { repository, manager, chain } = await setup();
    await expect(new IncrementalBackups(repository, { dir: chain }).read("20250101")).rejects.toSatisfy(code("NOT_FOUND"));
    expect(() => new IncrementalBackups(repository, { dir: chain, keep: 0 })).toThrow(/keep/);
    expect(() => new IncrementalBackups(repository, { dir: chain, maxAgeMs: -1 })).toThrow(/maxAgeMs/);
    expect(() => new IncrementalBackups(repository, { dir: "" })).toThrow(/folder/);
    const backups = new IncrementalBackups(repository, { dir: chain });
    await manager.create({ title: "1" });
    await backups.backup();
    await manager.create({ title: "2" });
    await backups.backup();
    const prefix = (await backups.list())[0]?.id.slice(0, 8) as string;
    await expect(backups.read(prefix)).rejects.toSatisfy(code("VALIDATION"));
  });

  it("a damaged manifest is CORRUPT_DATA naming it", async () => {
    const { repository, manager, chain } = await setup();
    const backups = new IncrementalBackups(repository, { dir: chain });
    await manager.create({ title: "x" });
    await backups.backup();
    const [name] = (await readdir(chain)).filter((file) => file.startsWith("manifest-"));
    const file = path.join(chain, name as string);
    await writeFile(file, (await readFile(file, "utf8")).replace('"tasks": 1', '"tasks": 2'));
    await expect(backups.list()).rejects.toThrow(new RegExp(`manifest ${file}.*damaged`));
    await expect(backups.list()).rejects.toSatisfy(code("CORRUPT_DATA"));
  });

  it("two instances backing up into one chain at once both land, and the chain reads", async () => {
    const { repository, manager, chain, open } = await setup();
    const id = await manager.create({ title: "t" });
    const a = new IncrementalBackups(repository, { dir: chain });
    const b = new IncrementalBackups(open(), { dir: chain });
    for (let i = 0; i < 5; i++) {
      await manager.appendOutput(id, `line ${i}`);
      await Promise.all([a.backup(), b.backup()]);
    }
    const points = await a.list();
    expect(points.length).toBeGreaterThanOrEqual(5);
    for (const point of points) await b.read(point.id);
    expect((await a.read((points.at(-1) as { id: string }).id)).data.tasks[0]?.logs).toHaveLength(5);
  });

  it("temp files and unlisted points a crash left are removed once an hour old, never sooner", async () => {
    const { repository, manager, chain } = await setup();
    const backups = new IncrementalBackups(repository, { dir: chain });
    await manager.create({ title: "x" });
    await backups.backup();
    const old = Date.now() / 1000 - 7_200;
    for (const name of [".tmp-1-aaaa", "20200101T000000000Z-abcd.delta-0000.json", ".tmp-2-bbbb"])
      await writeFile(path.join(chain, name), "x");
    await utimes(path.join(chain, ".tmp-1-aaaa"), old, old);
    await utimes(path.join(chain, "20200101T000000000Z-abcd.delta-0000.json"), old, old);
    await manager.create({ title: "y" });
    await backups.backup();
    const names = await readdir(chain);
    expect(names).toContain(".tmp-2-bbbb");
    expect(names).not.toContain(".tmp-1-aaaa");
    expect(names).not.toContain("20200101T000000000Z-abcd.delta-0000.json");
  });

  it("a sealed store's points hold no plaintext, and open only with its keys", async () => {
    const key = randomBytes(32).toString("base64");
    const { repository, manager, chain, open } = await setup({ sealing: { keys: [key] } });
    const backups = new IncrementalBackups(repository, { dir: chain });
    const id = await manager.create({ title: "secret-canary-title" });
    await backups.backup();
    await manager.appendOutput(id, "secret-canary-output");
    const point = (await backups.backup()).point;
    expect(point.keyId).toMatch(/^[0-9a-f]{16}$/);
    for (const name of await readdir(chain)) expect(await readFile(path.join(chain, name), "utf8")).not.toContain("secret-canary");
    await expect(new IncrementalBackups(open({}), { dir: chain }).read(point.id)).rejects.toSatisfy(code("ENCRYPTION"));
    await expect(
      new IncrementalBackups(open({ sealing: { keys: [randomBytes(32).toString("base64")] } }), { dir: chain }).read(point.id),
    ).rejects.toSatisfy(code("ENCRYPTION"));
    expect((await backups.read(point.id)).data.tasks[0]?.logs[0]?.output).toBe("secret-canary-output");
  });
});
