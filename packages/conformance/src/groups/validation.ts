import { LIMITS, type StoredTask, type TaskChange, TaskStoreError, type ValidationError } from "@taskstore/core";
import { expect, it } from "vitest";
import { makeTask } from "../fixtures.js";
import type { Harness } from "../harness.js";

function rejectsWith(path: string) {
  return (error: unknown) =>
    TaskStoreError.hasCode(error, "VALIDATION") && (error as ValidationError).issues.some((issue) => issue.path.join(".").startsWith(path));
}

export function validationTests(h: Harness): void {
  const refused = async (task: unknown, path: string) => {
    const repository = await h.repository();
    await expect(repository.save(task as StoredTask)).rejects.toSatisfy(rejectsWith(path));
    expect(await (await h.repository()).loadAll()).toEqual([]);
  };

  it("an unknown status is rejected with VALIDATION naming the field, and nothing is written", async () => {
    await refused({ ...makeTask(), status: "done" }, "status");
  });

  it("progress outside 0..100 is rejected", async () => {
    await refused(makeTask({ progress: { percent: 101 } }), "progress.percent");
    await refused(makeTask({ progress: { percent: -1 } }), "progress.percent");
  });

  it("NaN and Infinity are rejected wherever they appear", async () => {
    await refused(makeTask({ progress: { percent: Number.NaN } }), "progress.percent");
    await refused(makeTask({ metadata: { score: Number.POSITIVE_INFINITY } }), "metadata.score");
    await refused(makeTask({ createdAt: Number.NaN }), "createdAt");
  });

  it("functions, symbols, BigInts and class instances in metadata are rejected", async () => {
    await refused(makeTask({ metadata: { run: () => 1 } }), "metadata.run");
    await refused(makeTask({ metadata: { s: Symbol("x") } }), "metadata.s");
    await refused(makeTask({ metadata: { n: 10n } }), "metadata.n");
    await refused(makeTask({ metadata: { when: new Date(0) } }), "metadata.when");
  });

  it("an oversized title, description or log entry is rejected", async () => {
    await refused(makeTask({ title: "t".repeat(LIMITS.titleLength + 1) }), "title");
    await refused(makeTask({ description: "d".repeat(LIMITS.descriptionLength + 1) }), "description");
    await refused(makeTask({ logs: [{ timestamp: 1, type: "log", output: "o".repeat(LIMITS.logOutputLength + 1) }] }), "logs.0.output");
  });

  it("metadata deeper or larger than the limits is rejected", async () => {
    let deep: Record<string, unknown> = {};
    for (let i = 0; i < LIMITS.metadataDepth + 1; i++) deep = { d: deep };
    await refused(makeTask({ metadata: deep }), "metadata");
    await refused(makeTask({ metadata: { big: "x".repeat(LIMITS.metadataSize) } }), "metadata");
  });

  it("hostile ids are rejected before they reach the driver", async () => {
    const hostile = ["", "../../etc/passwd", "a/b", "a:b", "{tag}", "a b", "a\nb", "*", "x".repeat(LIMITS.idLength + 1), "tasks.json", "ü"];
    for (const id of hostile) await refused(makeTask({ id }), "id");
    await refused(makeTask({ parentId: "../up" }), "parentId");
    await refused(makeTask({ children: ["ok", "not ok"] }), "children.1");
    const manager = await h.manager();
    for (const id of hostile) {
      await expect(manager.appendOutput(id, "x")).rejects.toSatisfy(rejectsWith("id") as never);
    }
  });

  it("ids such as __proto__ and constructor are ordinary tasks", async () => {
    const repository = await h.repository();
    await repository.saveMany([makeTask({ id: "__proto__", title: "proto" }), makeTask({ id: "constructor", title: "ctor" })]);
    const reader = await h.repository();
    expect((await reader.loadById("__proto__"))?.title).toBe("proto");
    expect((await reader.loadById("constructor"))?.title).toBe("ctor");
    expect((await reader.loadAll()).length).toBe(2);
  });

  it("__proto__ and constructor keys in metadata are stored as data and pollute no prototype", async () => {
    const manager = await h.manager();
    const metadata = JSON.parse('{"__proto__": {"polluted": "yes"}, "constructor": {"prototype": {"polluted": "yes"}}, "plain": 1}');
    const id = await manager.create({ title: "hostile metadata", metadata });
    const stored = await (await h.repository()).loadById(id);
    expect(Object.keys(stored?.metadata ?? {}).sort()).toEqual(["__proto__", "constructor", "plain"]);
    expect(Object.getOwnPropertyDescriptor(stored?.metadata, "__proto__")?.value).toEqual({ polluted: "yes" });
    expect(Object.getPrototypeOf(stored?.metadata)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(manager.findById(id)?.metadata.plain).toBe(1);
  });

  it("invalid TaskManager input is rejected with VALIDATION and writes nothing", async () => {
    const manager = await h.manager();
    await expect(manager.create({ title: "" })).rejects.toSatisfy(rejectsWith("title"));
    await expect(manager.create({ title: 42 as never })).rejects.toSatisfy(rejectsWith("title"));
    const id = await manager.create({ title: "valid" });
    const before = await (await h.repository()).loadAll();
    await expect(manager.setProgress(id, { percent: 250 })).rejects.toSatisfy(rejectsWith("percent"));
    await expect(manager.appendOutput(id, "x", "shout" as never)).rejects.toSatisfy(rejectsWith("type"));
    await expect(manager.update(id, { metadata: { f: () => 0 } as never })).rejects.toSatisfy(rejectsWith("metadata.f"));
    expect(await (await h.repository()).loadAll()).toEqual(before);
  });

  it("fail() and cancel() notes over the log entry limit are refused with VALIDATION and nothing is written", async () => {
    const manager = await h.manager();
    const failing = await manager.create({ title: "fails" });
    const cancelling = await manager.create({ title: "is cancelled" });
    await manager.start(failing);
    const before = await (await h.repository()).loadAll();
    const note = "n".repeat(LIMITS.logOutputLength + 1);
    await expect(manager.fail(failing, note)).rejects.toSatisfy(rejectsWith("output"));
    await expect(manager.cancel(cancelling, note)).rejects.toSatisfy(rejectsWith("output"));
    expect(await (await h.repository()).loadAll()).toEqual(before);
    expect(manager.findById(failing)?.status).toBe("running");
    expect(manager.findById(cancelling)?.status).toBe("pending");
    // The next load is clean: nothing invalid reached the store.
    const reloaded = await h.manager();
    expect(reloaded.list().map((task) => [task.title, task.status])).toEqual([
      ["fails", "running"],
      ["is cancelled", "pending"],
    ]);
  });

  it("a change set built by hand meets the same limits as TaskManager input", async () => {
    const repository = await h.repository();
    const task = makeTask();
    await repository.save(task);
    const at = Date.now();
    const bad: [TaskChange[], string][] = [
      [
        [{ type: "append", id: task.id, entries: [{ timestamp: at, type: "log", output: "o".repeat(LIMITS.logOutputLength + 1) }], at }],
        "0.entries.0.output",
      ],
      [[{ type: "append", id: task.id, entries: [{ timestamp: at, type: "shout" as never, output: "x" }], at }], "0.entries.0.type"],
      [[{ type: "patch", id: task.id, set: { title: "" }, at }], "0.set.title"],
      [[{ type: "patch", id: task.id, set: { metadata: { f: () => 1 } as never }, at }], "0.set.metadata.f"],
      [[{ type: "patch", id: task.id, set: { children: [] } as never, at }], "0.set"],
      [[{ type: "patch", id: "../x", set: {}, at }], "0.id"],
      [[{ type: "put", task: { ...task, title: "t".repeat(LIMITS.titleLength + 1) } }], "0.task.title"],
      [[{ type: "explode" } as never], "0.type"],
    ];
    for (const [changes, path] of bad) {
      await expect(repository.apply(changes)).rejects.toSatisfy(rejectsWith(path));
    }
    expect(await (await h.repository()).loadAll()).toEqual([task]);
  });

  it("a string that is not well-formed Unicode (a lone surrogate) is refused with VALIDATION on every write path", async () => {
    const manager = await h.manager();
    const id = await manager.create({ title: "surrogates" });
    const before = await (await h.repository()).loadAll();
    const lone = "cut \ud83d here";
    await expect(manager.create({ title: lone })).rejects.toSatisfy(rejectsWith("0.task.title"));
    await expect(manager.appendOutput(id, lone)).rejects.toSatisfy(rejectsWith("0.entries.0.output"));
    await expect(manager.appendOutput(id, "ok", "log", "\udc00")).rejects.toSatisfy(rejectsWith("0.entries.0.source"));
    await expect(manager.update(id, { metadata: { [lone]: 1 } })).rejects.toSatisfy(rejectsWith("0.set.metadata"));
    await expect(manager.update(id, { metadata: { deep: [lone] } })).rejects.toSatisfy(rejectsWith("0.set.metadata.deep.0"));
    await expect(manager.setProgress(id, { percent: 1, message: lone })).rejects.toSatisfy(rejectsWith("0.set.progress.message"));
    await expect(manager.fail(id, lone)).rejects.toSatisfy(rejectsWith("1.entries.0.output"));
    await expect((await h.repository()).save(makeTask({ logs: [{ timestamp: 1, type: "log", output: lone }] }))).rejects.toSatisfy(
      rejectsWith("0.task.logs.0.output"),
    );
    expect(await (await h.repository()).loadAll()).toEqual(before);
    // Well-formed text outside the BMP is stored exactly.
    await manager.appendOutput(id, "pair \ud83d\ude00 kept");
    const stored = await (await h.repository()).loadById(id);
    expect(stored?.logs.map((entry) => entry.output)).toEqual(["pair \u{1F600} kept"]);
  });
}
