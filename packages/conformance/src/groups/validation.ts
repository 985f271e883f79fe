import { LIMITS, type StoredTask, TaskStoreError, type ValidationError } from "@taskstore/core";
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
}
