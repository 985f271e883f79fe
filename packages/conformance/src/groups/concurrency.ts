import { type DriverCapabilities, TaskStoreError } from "@taskstore/core";
import { expect, it, type TestContext } from "vitest";
import { makeTask, sleep } from "../fixtures.js";
import type { Harness } from "../harness.js";

async function needAny(h: Harness, ctx: TestContext, flags: (keyof DriverCapabilities)[]): Promise<void> {
  const caps = await h.capabilities();
  if (!flags.some((flag) => caps[flag])) ctx.skip(`the driver declares none of: ${flags.join(", ")}`);
}

async function needAll(h: Harness, ctx: TestContext, flags: (keyof DriverCapabilities)[]): Promise<void> {
  const caps = await h.capabilities();
  const missing = flags.filter((flag) => !caps[flag]);
  if (missing.length > 0) ctx.skip(`the driver does not declare: ${missing.join(", ")}`);
}

export function lockingTests(h: Harness): void {
  it("acquireLock() on a second instance waits until the first releases it", async (ctx) => {
    await needAny(h, ctx, ["locking"]);
    const first = await h.driver();
    const second = await h.driver();
    await first.acquireLock();
    let acquired = false;
    const waiting = second.acquireLock().then(() => {
      acquired = true;
    });
    await sleep(300);
    expect(acquired).toBe(false);
    await first.releaseLock();
    await waiting;
    expect(acquired).toBe(true);
    await second.releaseLock();
  });

  it("releaseLock() from an instance that does not hold the lock leaves the holder's lock in place", async (ctx) => {
    await needAny(h, ctx, ["locking"]);
    const holder = await h.driver();
    const intruder = await h.driver();
    const third = await h.driver();
    await holder.acquireLock();
    await intruder.releaseLock();
    let acquired = false;
    const waiting = third.acquireLock().then(() => {
      acquired = true;
    });
    await sleep(300);
    expect(acquired).toBe(false);
    await holder.releaseLock();
    await waiting;
    await third.releaseLock();
  });

  it("while one instance holds acquireLock(), another instance's write waits and lands after releaseLock()", async (ctx) => {
    await needAll(h, ctx, ["locking", "incremental"]);
    const holder = await h.driver();
    const writer = await h.manager();
    const observer = await h.driver();
    await holder.acquireLock();
    let landed = false;
    const creating = writer.create({ title: "written under another instance's lock" }).then((id) => {
      landed = true;
      return id;
    });
    await sleep(300);
    expect(landed).toBe(false);
    expect((await observer.loadData()).tasks).toHaveLength(0);
    await holder.releaseLock();
    const id = await creating;
    expect((await observer.loadData()).tasks.map((task) => task.id)).toEqual([id]);
  });

  it("a write the stored state refuses leaves the store writable for every instance", async (ctx) => {
    await needAny(h, ctx, ["locking", "incremental"]);
    const a = await h.manager();
    const id = await a.create({ title: "contested" });
    const b = await h.manager();
    await b.start(id);
    await b.complete(id);
    // a still believes the task is pending: the store refuses, a learns the stored state.
    await expect(a.start(id)).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "INVALID_TRANSITION"));
    expect(a.findById(id)?.status).toBe("completed");
    const c = await h.manager();
    await c.appendOutput(id, "still writable");
    expect((await (await h.repository()).loadById(id))?.logs.map((entry) => entry.output)).toEqual(["still writable"]);
  });
}

export function concurrencyTests(h: Harness): void {
  it("two managers patching different fields of one task concurrently lose nothing", async (ctx) => {
    await needAny(h, ctx, ["locking", "incremental"]);
    const a = await h.manager();
    const id = await a.create({ title: "shared" });
    const b = await h.manager();
    await Promise.all([
      a.update(id, { title: "renamed by a" }),
      b.assignAgent(id, { assignedTo: "agent-b" }),
      a.setProgress(id, { percent: 30 }),
      b.update(id, { description: "described by b" }),
      a.appendOutput(id, "from a"),
      b.appendOutput(id, "from b"),
    ]);
    const stored = await (await h.repository()).loadById(id);
    expect(stored).toMatchObject({
      title: "renamed by a",
      assignedTo: "agent-b",
      progress: { percent: 30 },
      description: "described by b",
    });
    expect(stored?.logs.map((entry) => entry.output).sort()).toEqual(["from a", "from b"]);
  });

  it("four instances appending to one task's log concurrently lose no entry", async (ctx) => {
    await needAny(h, ctx, ["locking", "incremental"]);
    const first = await h.manager();
    const id = await first.create({ title: "log sink" });
    const managers = [first, await h.manager(), await h.manager(), await h.manager()];
    await Promise.all(
      managers.map((manager, m) => Promise.all(Array.from({ length: 25 }, (_, i) => manager.appendOutput(id, `m${m}-${i}`)))),
    );
    const outputs = (await (await h.repository()).loadById(id))?.logs.map((entry) => entry.output) ?? [];
    expect(outputs).toHaveLength(100);
    expect(new Set(outputs).size).toBe(100);
    for (let m = 0; m < 4; m++) {
      const mine = outputs.filter((output) => output.startsWith(`m${m}-`));
      expect(mine).toEqual(Array.from({ length: 25 }, (_, i) => `m${m}-${i}`));
    }
  });

  it("four instances creating tasks concurrently lose none", async (ctx) => {
    await needAny(h, ctx, ["locking", "incremental"]);
    const managers = await Promise.all([h.manager(), h.manager(), h.manager(), h.manager()]);
    const ids = (
      await Promise.all(
        managers.map((manager, m) => Promise.all(Array.from({ length: 25 }, (_, i) => manager.create({ title: `m${m} t${i}` })))),
      )
    ).flat();
    const stored = await (await h.repository()).loadAll();
    expect(stored.map((task) => task.id).sort()).toEqual([...ids].sort());
  });

  it("two instances starting one task at the same moment: exactly one succeeds", async (ctx) => {
    await needAny(h, ctx, ["locking", "incremental"]);
    const a = await h.manager();
    const id = await a.create({ title: "race" });
    const b = await h.manager();
    const results = await Promise.allSettled([a.start(id), b.start(id)]);
    expect(results.filter((result) => result.status === "fulfilled")).toHaveLength(1);
    const rejected = results.find((result) => result.status === "rejected") as PromiseRejectedResult;
    expect(TaskStoreError.hasCode(rejected.reason, "INVALID_TRANSITION")).toBe(true);
    expect((await (await h.repository()).loadById(id))?.status).toBe("running");
  });

  it("concurrent links from two instances never store a cycle", async (ctx) => {
    await needAny(h, ctx, ["locking", "incremental"]);
    const a = await h.manager();
    const x = await a.create({ title: "x" });
    const y = await a.create({ title: "y" });
    const b = await h.manager();
    const results = await Promise.allSettled([a.linkParentChild(x, y), b.linkParentChild(y, x)]);
    expect(results.filter((result) => result.status === "fulfilled")).toHaveLength(1);
    const stored = await (await h.repository()).loadAll();
    const parentOf = new Map(stored.map((task) => [task.id, task.parentId]));
    expect(parentOf.get(x) === y && parentOf.get(y) === x).toBe(false);
  });

  it("refresh() shows another instance's changes", async () => {
    const a = await h.manager();
    const b = await h.manager();
    const id = await a.create({ title: "made by a" });
    await b.refresh();
    expect(b.findById(id)?.title).toBe("made by a");
  });

  it("saving a task does not disturb a concurrent append to another task", async (ctx) => {
    await needAny(h, ctx, ["locking", "incremental"]);
    const repository = await h.repository();
    const manager = await h.manager();
    const id = await manager.create({ title: "appended" });
    await Promise.all([
      ...Array.from({ length: 10 }, (_, i) => manager.appendOutput(id, `entry ${i}`)),
      ...Array.from({ length: 10 }, () => repository.save(makeTask())),
    ]);
    const loaded = await (await h.repository()).loadAll();
    expect(loaded).toHaveLength(11);
    expect(loaded.find((task) => task.id === id)?.logs).toHaveLength(10);
  });
}
