import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, unlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  type BackupPoint,
  EventBus,
  IncrementalBackups,
  type RetentionRule,
  type StoredTask,
  TaskManager,
  type TaskRepository,
  TaskStoreError,
} from "@taskstore/core";
import { expect, it, onTestFinished } from "vitest";
import { startChild } from "../child-driver.js";
import { byId, makeLogs, makeTask, sleep } from "../fixtures.js";
import type { Harness } from "../harness.js";
import { folderBytes } from "../raw.js";
import { afterTakeover, needProcesses } from "../waiting.js";

// Incremental backups are core's (a chain of points in a local folder, through the repository),
// so they work on every driver; these tests prove it on this one: only the changes stored,
// every kept point restoring to exactly its data, retention, damage refused with nothing
// written, sealed points without plaintext, and a backup process killed halfway losing nothing.

const CANARY = "canary-backup-5e1d-never-in-clear";
const hasCode = (code: string) => (error: unknown) => TaskStoreError.hasCode(error, code as never);

/** A fresh chain folder, removed after the test. */
async function chainDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "taskstore-chain-"));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return path.join(dir, "chain");
}

async function chain(h: Harness, rule: RetentionRule = {}, repository?: TaskRepository) {
  const dir = await chainDir();
  const repo = repository ?? (await h.repository());
  return { dir, repository: repo, backups: new IncrementalBackups(repo, { dir, ...rule }) };
}

async function managerOf(repository: TaskRepository): Promise<TaskManager> {
  const manager = new TaskManager(new EventBus(), repository);
  await manager.loadFromRepository();
  return manager;
}

/** The store as a fresh instance reads it, by id. */
async function stored(h: Harness): Promise<StoredTask[]> {
  return byId(await (await h.repository()).loadAll());
}

export function incrementalBackupTests(h: Harness): void {
  it("points after the base hold only the changes: a one-task change in a 500-task store is a small fraction of it", async () => {
    const { repository, backups } = await chain(h);
    await repository.saveMany(Array.from({ length: 500 }, (_, i) => makeTask({ id: `t-${i}`, logs: makeLogs(3, `task ${i}`) })));
    const base = (await backups.backup()).point;
    expect(base).toMatchObject({ kind: "base", tasks: 500, changed: 500 });
    const manager = await managerOf(repository);
    const sizes: number[] = [];
    const step = async (change: () => Promise<unknown>, expected: Partial<BackupPoint>) => {
      await change();
      const { point, written } = await backups.backup();
      expect(written).toBe(true);
      expect(point).toMatchObject({ kind: "delta", ...expected });
      sizes.push(point.bytes);
    };
    await step(() => manager.appendOutput("t-7", "one more line"), { tasks: 500, changed: 1, removed: 0 });
    await step(() => manager.update("t-8", { title: "renamed" }), { tasks: 500, changed: 1, removed: 0 });
    await step(() => manager.create({ title: "new" }), { tasks: 501, changed: 1, removed: 0 });
    await step(() => manager.delete("t-9"), { tasks: 500, changed: 0, removed: 1 });
    for (const bytes of sizes) expect(bytes).toBeLessThan(base.bytes / 100);
    expect(await backups.backup()).toMatchObject({ written: false });
  });

  it("restore to each kept point gives exactly that point's data, and the store it replaced is kept as a new point", async () => {
    const { repository, backups } = await chain(h);
    const manager = await managerOf(repository);
    const expected = new Map<string, StoredTask[]>();
    const snap = async () => {
      const { point } = await backups.backup();
      expected.set(point.id, await stored(h));
      return point.id;
    };
    const root = await manager.create({ title: "root", metadata: { nested: { deep: [1, "two", null] } } });
    const child = await manager.create({ title: "child ✓ ünïcode", parentId: root });
    await manager.appendOutput(child, "first line", "stdout", "make");
    const ids = [await snap()];
    await manager.start(child);
    await manager.setProgress(child, { percent: 40, message: "compiling" });
    for (let i = 0; i < 20; i++) await manager.appendOutput(child, `line ${i}`, i % 2 ? "stderr" : "stdout");
    ids.push(await snap());
    const other = await manager.create({ title: "other" });
    await manager.linkParentChild(other, child);
    await manager.update(root, { description: "now with a description", assignedTo: "agent-1" });
    ids.push(await snap());
    await manager.delete(root);
    await manager.complete(child);
    ids.push(await snap());
    for (const id of [ids[1], ids[0], ids[3], ids[2], ids[0]] as string[]) {
      const before = await stored(h);
      const result = await backups.restore(id);
      expect(result.point.id).toBe(id);
      expect(await stored(h)).toEqual(expected.get(id));
      // The store it replaced is a point of its own (or the newest point already was that store).
      expect(byId((await backups.read(result.keptAs.id)).data.tasks)).toEqual(before);
    }
  });

  it("retention keeps the last N points, prune() folds the oldest into a new base, and every point left restores", async () => {
    const { repository, backups, dir } = await chain(h, { keep: 3 });
    const manager = await managerOf(repository);
    const target = await manager.create({ title: "target" });
    const expected = new Map<string, StoredTask[]>();
    let pruned = 0;
    for (let i = 0; i < 8; i++) {
      await manager.appendOutput(target, `line ${i}`);
      if (i % 3 === 1) await manager.create({ title: `extra ${i}` });
      const result = await backups.backup();
      pruned += result.pruned.length;
      expected.set(result.point.id, await stored(h));
    }
    expect(await backups.list()).toHaveLength(3);
    expect(pruned).toBe(5);
    await backups.prune();
    const points = await backups.list();
    expect(points.map((point) => point.kind)).toEqual(["base", "delta", "delta"]);
    expect((await readdir(dir)).filter((name) => !name.startsWith("manifest-")).sort()).toEqual(points.map((point) => point.file).sort());
    for (const point of [...points].reverse()) {
      await backups.restore(point.id);
      expect(await stored(h)).toEqual(expected.get(point.id));
    }
  });

  it("a damaged or missing point file is CORRUPT_DATA naming the point, and nothing is written", async () => {
    const { repository, backups, dir } = await chain(h);
    const manager = await managerOf(repository);
    const id = await manager.create({ title: "t" });
    const points: BackupPoint[] = [];
    for (let i = 0; i < 3; i++) {
      await manager.appendOutput(id, `line ${i}`);
      points.push((await backups.backup()).point);
    }
    await manager.appendOutput(id, "after the last point");
    const [base, middle, last] = points as [BackupPoint, BackupPoint, BackupPoint];
    const file = path.join(dir, middle.file);
    const original = await readFile(file);
    const bytes = Buffer.from(original);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = (bytes[at] as number) ^ 0x20;
    await writeFile(file, bytes);
    const storeBefore = byId((await (await h.driver()).loadData()).tasks);
    const chainBefore = (await readdir(dir)).sort();
    for (const point of [middle, last]) {
      const error = await backups.restore(point.id).catch((caught: unknown) => caught);
      expect(error).toSatisfy(hasCode("CORRUPT_DATA"));
      expect((error as Error).message).toContain(middle.id);
    }
    await writeFile(file, original);
    await unlink(path.join(dir, last.file));
    await expect(backups.restore(last.id)).rejects.toThrow(new RegExp(`${last.id}.*missing`));
    await expect(backups.restore(last.id)).rejects.toSatisfy(hasCode("CORRUPT_DATA"));
    expect(byId((await (await h.driver()).loadData()).tasks)).toEqual(storeBefore);
    expect((await readdir(dir)).sort()).toEqual(chainBefore.filter((name) => name !== last.file));
    // The points before the damage still restore.
    await backups.restore(base.id);
    expect((await stored(h))[0]?.logs.map((entry) => entry.output)).toEqual(["line 0"]);
  });

  it("a sealed store's points hold no plaintext of it, and a wrong or missing key is refused with ENCRYPTION, nothing written", async () => {
    const keys = [randomBytes(32).toString("base64")];
    const sealed = await h.repository({ sealing: { keys, compress: true } });
    const { backups, dir } = await chain(h, {}, sealed);
    const manager = await managerOf(sealed);
    const id = await manager.create({ title: `title ${CANARY}`, metadata: { [CANARY]: CANARY } });
    await manager.appendOutput(id, `output ${CANARY}`, "stdout", `source ${CANARY}`);
    await backups.backup();
    await manager.update(id, { description: `description ${CANARY}` });
    await manager.appendOutput(id, `${"a long line of build output ".repeat(100)}${CANARY}`);
    const point = (await backups.backup()).point;
    expect(point.keyId).toBeDefined();
    expect((await folderBytes(dir)).includes(CANARY)).toBe(false);
    await manager.delete(id);
    const before = byId((await (await h.driver()).loadData()).tasks);
    for (const repository of [await h.repository(), await h.repository({ sealing: { keys: [randomBytes(32).toString("base64")] } })]) {
      await expect(new IncrementalBackups(repository, { dir }).restore(point.id)).rejects.toSatisfy(hasCode("ENCRYPTION"));
    }
    expect(byId((await (await h.driver()).loadData()).tasks)).toEqual(before);
    await backups.restore(point.id);
    expect((await (await h.repository({ sealing: { keys } })).loadById(id))?.description).toBe(`description ${CANARY}`);
    // The check can see plaintext: a chain of the same store whose keys only open (no encryption) holds it.
    const opening = await chain(h, {}, await h.repository({ sealing: { keys, encrypt: false } }));
    await opening.backups.backup();
    expect((await folderBytes(opening.dir)).includes(CANARY)).toBe(true);
  });

  it("a backup process SIGKILLed while it writes points or prunes loses no earlier point, and every point left restores", async (ctx) => {
    needProcesses(h, ctx);
    const keep = 3;
    const dir = await chainDir();
    const repository = await h.repository();
    await repository.saveMany(Array.from({ length: 500 }, (_, i) => makeTask({ id: `t-${i}`, logs: makeLogs(4, `task ${i}`) })));
    const taskId = "t-0";
    const acked = new Map<string, string>(); // point -> the last line it holds
    for (let round = 0; round < 6; round++) {
      const tag = `r${round}`;
      const child = startChild({ driver: h.child(), mode: "incremental-backup", dir, keep, taskId, tag });
      await child.waitFor((line) => line.ready === true, "opening the store");
      const target = 1 + Math.floor(Math.random() * 4);
      let acks = 0;
      await child.waitFor((line) => typeof line.ack === "string" && ++acks >= target, `${target} points`);
      await sleep(Math.random() * 60); // inside a point's write, a fold, a manifest's publication
      child.process.kill("SIGKILL");
      await child.exited;
      const mine = child.lines.filter((line) => typeof line.ack === "string");
      for (const line of mine) acked.set(line.ack as string, `${tag}-${line.i}`);

      const backups = new IncrementalBackups(await h.repository(), { dir, keep });
      const points = (await backups.list()).map((point) => point.id);
      // The newest acknowledged points are all still there: at most one more landed after them.
      for (const line of mine.slice(-(keep - 1))) expect(points).toContain(line.ack);
      for (const id of points) {
        const { data } = await backups.read(id);
        expect(data.tasks).toHaveLength(500);
        const line = acked.get(id);
        if (line) expect(data.tasks.find((task) => task.id === taskId)?.logs.at(-1)?.output).toBe(line);
      }
      // And the chain goes on: a new point, then a restore of the newest (under the store's lock,
      // which the killed process may have held).
      const next = await backups.backup();
      await afterTakeover(h, () => backups.restore(next.point.id));
      expect(byId((await backups.read(next.point.id)).data.tasks)).toEqual(await stored(h));
    }
  });
}
