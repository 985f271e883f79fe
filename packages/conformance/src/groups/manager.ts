import { type StoredTask, TaskStoreError } from "@taskstore/core";
import { expect, it } from "vitest";
import type { Harness } from "../harness.js";

const hasCode = (code: string) => (error: unknown) => TaskStoreError.hasCode(error, code as never);

export function managerTests(h: Harness): void {
  it("every TaskManager operation is in the store, as a second instance reads it", async () => {
    const manager = await h.manager();
    const reader = await h.repository();
    const stored = async (id: string) => (await reader.loadById(id)) as StoredTask;

    const parent = await manager.create({ title: "Build feature", description: "Add persistence", metadata: { area: "core" } });
    expect(await stored(parent)).toMatchObject({
      title: "Build feature",
      description: "Add persistence",
      status: "pending",
      metadata: { area: "core" },
    });
    const child = await manager.create({ title: "Write tests", parentId: parent, assignedTo: "agent-a" });
    expect((await stored(parent)).children).toEqual([child]);
    expect(await stored(child)).toMatchObject({ parentId: parent, assignedTo: "agent-a" });

    await manager.update(parent, { title: "Build awesome feature", metadata: { area: "core", size: 3 } });
    expect(await stored(parent)).toMatchObject({ title: "Build awesome feature", metadata: { area: "core", size: 3 } });
    await manager.start(parent);
    expect((await stored(parent)).status).toBe("running");
    await manager.setProgress(parent, { percent: 40, currentStep: 2, totalSteps: 5, message: "halfway-ish" });
    expect((await stored(parent)).progress).toEqual({ percent: 40, currentStep: 2, totalSteps: 5, message: "halfway-ish" });
    await manager.appendOutput(parent, "compiling", "stdout", "tsc");
    expect((await stored(parent)).logs).toMatchObject([{ output: "compiling", type: "stdout", source: "tsc" }]);
    await manager.assignAgent(parent, { assignedTo: "agent-b" });
    expect((await stored(parent)).assignedTo).toBe("agent-b");
    await manager.pause(parent);
    expect((await stored(parent)).status).toBe("paused");
    await manager.resume(parent);
    expect((await stored(parent)).status).toBe("running");
    await manager.complete(parent);
    expect(await stored(parent)).toMatchObject({ status: "completed", progress: { percent: 100 } });

    const other = await manager.create({ title: "Other" });
    await manager.linkParentChild(other, child);
    expect((await stored(child)).parentId).toBe(other);
    expect((await stored(other)).children).toEqual([child]);
    expect((await stored(parent)).children).toEqual([]);
    await manager.fail(child, "tests broke");
    expect(await stored(child)).toMatchObject({ status: "failed", logs: [{ output: "tests broke", type: "error" }] });
    await manager.retry(child);
    expect((await stored(child)).status).toBe("pending");
    await manager.cancel(child, "not needed");
    expect((await stored(child)).status).toBe("cancelled");
    await manager.delete(other);
    expect(await reader.loadById(other)).toBeNull();
    expect(await reader.loadById(child)).toBeNull();
    expect((await reader.loadAll()).map((task) => task.id)).toEqual([parent]);
  });

  it("an illegal transition throws INVALID_TRANSITION and leaves the store as it was", async () => {
    const manager = await h.manager();
    const id = await manager.create({ title: "never started" });
    const reader = await h.repository();
    const before = await reader.loadById(id);
    await expect(manager.complete(id)).rejects.toSatisfy(hasCode("INVALID_TRANSITION"));
    await expect(manager.pause(id)).rejects.toSatisfy(hasCode("INVALID_TRANSITION"));
    await expect(manager.resume(id)).rejects.toSatisfy(hasCode("INVALID_TRANSITION"));
    await manager.cancel(id);
    await expect(manager.start(id)).rejects.toSatisfy(hasCode("INVALID_TRANSITION"));
    await expect(manager.fail(id)).rejects.toSatisfy(hasCode("INVALID_TRANSITION"));
    expect(await reader.loadById(id)).toEqual({ ...before, status: "cancelled", updatedAt: expect.any(Number) });
    expect(manager.findById(id)?.status).toBe("cancelled");
  });

  it("linkParentChild() rejects a cycle and a missing task, storing nothing", async () => {
    const manager = await h.manager();
    const a = await manager.create({ title: "a" });
    const b = await manager.create({ title: "b", parentId: a });
    const c = await manager.create({ title: "c", parentId: b });
    const before = await (await h.repository()).loadAll();
    await expect(manager.linkParentChild(c, a)).rejects.toSatisfy(hasCode("CYCLE"));
    await expect(manager.linkParentChild(a, a)).rejects.toSatisfy(hasCode("CYCLE"));
    await expect(manager.linkParentChild("missing-task", a)).rejects.toSatisfy(hasCode("NOT_FOUND"));
    await expect(manager.linkParentChild(a, "missing-task")).rejects.toSatisfy(hasCode("NOT_FOUND"));
    expect(await (await h.repository()).loadAll()).toEqual(before);
  });

  it("delete(id) removes the whole subtree from the store, and a missing id throws NOT_FOUND", async () => {
    const manager = await h.manager();
    const root = await manager.create({ title: "root" });
    const kid = await manager.create({ title: "kid", parentId: root });
    await manager.create({ title: "grandkid", parentId: kid });
    const survivor = await manager.create({ title: "survivor" });
    await manager.delete(root);
    expect((await (await h.repository()).loadAll()).map((task) => task.id)).toEqual([survivor]);
    await expect(manager.delete(root)).rejects.toSatisfy(hasCode("NOT_FOUND"));
  });

  it("the log cap keeps the newest entries and counts the dropped ones", async () => {
    const manager = await h.manager({ logCap: 5 });
    const id = await manager.create({ title: "chatty" });
    for (let i = 0; i < 8; i++) await manager.appendOutput(id, `line ${i}`);
    const stored = await (await h.repository({ logCap: 5 })).loadById(id);
    expect(stored?.logs.map((entry) => entry.output)).toEqual(["line 3", "line 4", "line 5", "line 6", "line 7"]);
    expect(stored?.droppedLogCount).toBe(3);
  });

  it("create() under a missing parent throws NOT_FOUND and stores nothing", async () => {
    const manager = await h.manager();
    await expect(manager.create({ title: "orphan", parentId: "no-parent" })).rejects.toSatisfy(hasCode("NOT_FOUND"));
    expect(await (await h.repository()).loadAll()).toEqual([]);
  });
}
