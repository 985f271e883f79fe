import type { StoredTask, TaskStatus } from "@taskstore/core";
import { expect, it } from "vitest";
import { byId, makeLogs, makeTask } from "../fixtures.js";
import type { Harness } from "../harness.js";

const STATUSES: TaskStatus[] = ["pending", "running", "paused", "completed", "failed", "cancelled"];

export function roundTripTests(h: Harness): void {
  it("save() then loadById() returns every field as it was saved", async () => {
    const repository = await h.repository();
    const parent = makeTask({ id: "rt-parent", children: ["rt-child"] });
    const task = makeTask({
      id: "rt-child",
      title: "Every field",
      description: "A description\nover two lines",
      status: "paused",
      parentId: "rt-parent",
      assignedTo: "agent-7",
      progress: { percent: 42.5, currentStep: 3, totalSteps: 8, estimatedTimeRemaining: 12_000, message: "compiling" },
      metadata: { branch: "main", attempts: 2, flags: [true, false], nothing: null },
      logs: makeLogs(3),
    });
    await repository.saveMany([parent, task]);
    const reader = await h.repository();
    expect(await reader.loadById("rt-child")).toEqual(task);
    expect(await reader.loadById("rt-parent")).toEqual(parent);
  });

  it("unicode in titles, descriptions, logs and metadata round-trips exactly", async () => {
    const repository = await h.repository();
    const text = 'Déjà vu — 漢字 かな 한글 עברית العربية 🚀👩‍💻 e\u0301 \u0001\t"quotes" \\back\\slash';
    const task = makeTask({
      title: text,
      description: text.repeat(3),
      metadata: { [text]: text, nested: { ключ: ["значение", "🚀"] } },
      logs: [{ timestamp: 1, output: text, type: "stdout", source: "ソース" }],
    });
    await repository.save(task);
    expect(await (await h.repository()).loadById(task.id)).toEqual(task);
  });

  it("every status round-trips", async () => {
    const repository = await h.repository();
    const tasks = STATUSES.map((status) => makeTask({ id: `status-${status}`, status }));
    await repository.saveMany(tasks);
    const loaded = await (await h.repository()).loadAll();
    expect(byId(loaded)).toEqual(byId(tasks));
  });

  it("every log type round-trips with its source, in order", async () => {
    const repository = await h.repository();
    const task = makeTask({ logs: makeLogs(12) });
    await repository.save(task);
    const loaded = await (await h.repository()).loadById(task.id);
    expect(loaded?.logs).toEqual(task.logs);
  });

  it("nested metadata round-trips: arrays, nulls, booleans, numbers and ten levels of objects", async () => {
    const repository = await h.repository();
    let deep: Record<string, unknown> = { leaf: "bottom" };
    for (let i = 0; i < 9; i++) deep = { [`level${i}`]: deep, index: i };
    const metadata = { deep, list: [1, -2.5, 0, 1e21, [], {}, [null, true, "x"]], empty: {}, t: true, f: false, n: null };
    const task = makeTask({ metadata });
    await repository.save(task);
    expect((await (await h.repository()).loadById(task.id))?.metadata).toEqual(metadata);
  });

  it("a large log of 5,000 entries round-trips in order", async () => {
    const repository = await h.repository();
    const task = makeTask({ logs: makeLogs(5_000, "bulk") });
    await repository.save(task);
    const loaded = await (await h.repository()).loadById(task.id);
    expect(loaded?.logs).toHaveLength(5_000);
    expect(loaded?.logs).toEqual(task.logs);
  });

  it("loadById() of a missing id resolves null", async () => {
    const repository = await h.repository();
    await repository.save(makeTask());
    expect(await repository.loadById("no-such-task")).toBeNull();
  });

  it("ids that differ only in case are different tasks", async () => {
    const repository = await h.repository();
    await repository.saveMany([makeTask({ id: "CaseTask", title: "upper" }), makeTask({ id: "casetask", title: "lower" })]);
    const reader = await h.repository();
    expect((await reader.loadById("CaseTask"))?.title).toBe("upper");
    expect((await reader.loadById("casetask"))?.title).toBe("lower");
  });

  it("the droppedLogCount of a task round-trips", async () => {
    const repository = await h.repository();
    const task: StoredTask = { ...makeTask({ logs: makeLogs(2) }), droppedLogCount: 17 };
    await repository.save(task);
    expect((await (await h.repository()).loadById(task.id))?.droppedLogCount).toBe(17);
  });
}
