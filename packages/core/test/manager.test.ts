import { randomUUID } from "node:crypto";
import { EventBus, MemoryStorageDriver, TaskManager, TaskRepository } from "@taskstore/core";
import { describe, expect, it } from "vitest";
import { eventually } from "./helpers.js";

const open = async (store: string) => {
  const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new MemoryStorageDriver({ store }) }));
  await manager.loadFromRepository();
  return manager;
};

describe("TaskManager", () => {
  it("input objects refuse keys they do not know, naming them, and write nothing", async () => {
    const store = randomUUID();
    const manager = await open(store);
    const id = await manager.create({ title: "strict" });
    const unknown = (key: string) => (error: unknown) =>
      (error as { code?: string }).code === "VALIDATION" && (error as Error).message.includes(`"${key}"`);
    await expect(manager.update(id, { status: "completed" } as never)).rejects.toSatisfy(unknown("status"));
    await expect(manager.create({ title: "x", priority: 1 } as never)).rejects.toSatisfy(unknown("priority"));
    await expect(manager.setProgress(id, { percent: 5, pct: 5 } as never)).rejects.toSatisfy(unknown("pct"));
    await expect(manager.assignAgent(id, { assignedTo: "a", agent: "b" } as never)).rejects.toSatisfy(unknown("agent"));
    expect(() => manager.list({ state: "running" } as never)).toThrow(/"state"/);
    const stored = await new TaskRepository({ driver: new MemoryStorageDriver({ store }) }).loadAll();
    expect(stored.map((task) => [task.title, task.status, task.progress.percent])).toEqual([["strict", "pending", 0]]);
    await manager.close();
  });

  it("operations called without awaiting apply in call order", async () => {
    const manager = await open(randomUUID());
    const id = await manager.create({ title: "quick" });
    const done = [manager.start(id), manager.setProgress(id, { percent: 50 }), manager.appendOutput(id, "a"), manager.complete(id)];
    await Promise.all(done);
    expect(manager.findById(id)).toMatchObject({ status: "completed", progress: { percent: 100 }, logs: [{ output: "a" }] });
    await manager.close();
  });

  it("an operation on a task another process created finds it without a manual refresh", async () => {
    const store = randomUUID();
    const a = await open(store);
    const b = await open(store);
    const id = await a.create({ title: "made by a" });
    await b.appendOutput(id, "written by b");
    expect(b.findById(id)?.logs.map((entry) => entry.output)).toEqual(["written by b"]);
    await a.close();
    await b.close();
  });

  it("follows another instance's changes by itself when the driver notifies", async () => {
    const store = randomUUID();
    const a = await open(store);
    const b = await open(store);
    let refreshed = 0;
    b.eventBus.on("tasks:refreshed", () => refreshed++);
    const id = await a.create({ title: "seen by b" });
    await eventually(() => b.findById(id) !== undefined);
    expect(refreshed).toBeGreaterThan(0);
    expect(b.findById(id)?.title).toBe("seen by b");
    await a.close();
    await b.close();
  });

  it("findById and list return copies: changing them changes nothing stored", async () => {
    const manager = await open(randomUUID());
    const id = await manager.create({ title: "original", metadata: { n: 1 } });
    const copy = manager.findById(id);
    if (copy) {
      copy.title = "mutated";
      copy.metadata.n = 2;
    }
    const listed = manager.list()[0];
    if (listed) listed.logs.push({ timestamp: 0, output: "x", type: "log" });
    expect(manager.findById(id)).toMatchObject({ title: "original", metadata: { n: 1 }, logs: [] });
    await manager.close();
  });

  it("list() filters by status, parent (null for roots) and assignee", async () => {
    const manager = await open(randomUUID());
    const root = await manager.create({ title: "root", assignedTo: "ann" });
    const child = await manager.create({ title: "child", parentId: root });
    await manager.start(child);
    expect(manager.list({ parentId: null }).map((t) => t.id)).toEqual([root]);
    expect(manager.list({ parentId: root }).map((t) => t.id)).toEqual([child]);
    expect(manager.list({ status: "running" }).map((t) => t.id)).toEqual([child]);
    expect(manager.list({ status: ["pending", "running"] })).toHaveLength(2);
    expect(manager.list({ assignedTo: "ann" }).map((t) => t.id)).toEqual([root]);
    await manager.close();
  });

  it("assignAgent with null unassigns; retry() brings a failed task back to pending at 0%", async () => {
    const manager = await open(randomUUID());
    const id = await manager.create({ title: "t", assignedTo: "bob" });
    await manager.assignAgent(id, { assignedTo: null });
    expect(manager.findById(id)?.assignedTo).toBeUndefined();
    await manager.start(id);
    await manager.setProgress(id, { percent: 70 });
    await manager.fail(id, "boom");
    await manager.retry(id);
    expect(manager.findById(id)).toMatchObject({ status: "pending", progress: { percent: 0 } });
    await manager.close();
  });
});

describe("TaskManager.complete()", () => {
  it("sets 100% against the progress of its turn, keeping a message set just before it without awaiting", async () => {
    const manager = await open(randomUUID());
    const id = await manager.create({ title: "t" });
    await manager.start(id);
    const statuses: string[] = [];
    manager.eventBus.on("task:status", (event) => statuses.push(`${event.from}->${event.to}`));
    await Promise.all([manager.setProgress(id, { percent: 90, message: "almost", currentStep: 9 }), manager.complete(id)]);
    expect(manager.findById(id)?.progress).toEqual({ percent: 100, message: "almost", currentStep: 9 });
    expect(statuses).toEqual(["running->completed"]);
    await manager.close();
  });
});

describe("TaskManager keeps fields it does not know", () => {
  it("a task's unknown top-level fields, even one named __proto__, survive a write as plain data", async () => {
    const now = Date.now();
    // A newer version (or a hand edit) wrote fields this version does not know.
    let text = `{"version":"1.0.0","metadata":{"lastUpdated":${now},"totalTasks":1},"tasks":[{"id":"t1","title":"old","status":"running","progress":{"percent":0},"metadata":{},"createdAt":${now},"updatedAt":${now},"children":[],"logs":[],"futureField":1,"__proto__":{"polluted":true}}]}`;
    const driver = {
      initialize: async () => undefined,
      loadData: async () => JSON.parse(text),
      saveData: async (data: unknown) => {
        text = JSON.stringify(data);
      },
      backup: async () => undefined,
      acquireLock: async () => undefined,
      releaseLock: async () => undefined,
    };
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver }));
    await manager.loadFromRepository();
    await manager.appendOutput("t1", "written");
    await manager.close();
    const saved = JSON.parse(text).tasks[0];
    expect(saved.futureField).toBe(1);
    expect(Object.hasOwn(saved, "__proto__")).toBe(true);
    expect(Object.getPrototypeOf(saved)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(saved, "__proto__")?.value).toEqual({ polluted: true });
    expect(saved.logs).toEqual([expect.objectContaining({ output: "written" })]);
  });
});

describe("TaskManager.loadFromRepository", () => {
  it("follows changes before it loads: a change made while the load runs is not missed", async () => {
    const store = randomUUID();
    const writer = await open(store);
    const driver = new MemoryStorageDriver({ store });
    const load = driver.loadData.bind(driver);
    let first = true;
    // Another instance commits right after this load has read the store, before it returns.
    driver.loadData = async () => {
      const data = await load();
      if (first) {
        first = false;
        await writer.create({ title: "made during the load" });
      }
      return data;
    };
    const follower = new TaskManager(new EventBus(), new TaskRepository({ driver }));
    await follower.loadFromRepository();
    await eventually(() => follower.list().some((task) => task.title === "made during the load"));
    await follower.close();
    await writer.close();
  });
});
