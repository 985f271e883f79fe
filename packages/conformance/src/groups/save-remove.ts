import { TaskStoreError } from "@taskstore/core";
import { expect, it } from "vitest";
import { byId, makeLogs, makeTask } from "../fixtures.js";
import type { Harness } from "../harness.js";

const isValidation = (error: unknown) => TaskStoreError.hasCode(error, "VALIDATION");

export function saveRemoveTests(h: Harness): void {
  it("saveMany() stores every task, seen whole by one load", async () => {
    const repository = await h.repository();
    const tasks = Array.from({ length: 50 }, (_, i) => makeTask({ id: `many-${i}`, logs: makeLogs(i % 4) }));
    await repository.saveMany(tasks);
    expect(byId(await (await h.repository()).loadAll())).toEqual(byId(tasks));
  });

  it("saveMany() with one invalid task rejects with VALIDATION and writes none of them", async () => {
    const repository = await h.repository();
    const good = makeTask({ id: "good-one" });
    const bad = { ...makeTask({ id: "bad-one" }), status: "exploded" };
    await expect(repository.saveMany([good, bad as never])).rejects.toSatisfy(isValidation);
    expect(await (await h.repository()).loadAll()).toEqual([]);
  });

  it("save() of an existing id replaces the task, its log included", async () => {
    const repository = await h.repository();
    await repository.save(makeTask({ id: "replace-me", title: "first", logs: makeLogs(5, "old") }));
    const second = makeTask({ id: "replace-me", title: "second", logs: makeLogs(2, "new") });
    await repository.save(second);
    expect(await (await h.repository()).loadById("replace-me")).toEqual(second);
  });

  it("remove(id) deletes the task and its log", async () => {
    const repository = await h.repository();
    await repository.saveMany([makeTask({ id: "keep" }), makeTask({ id: "drop", logs: makeLogs(20) })]);
    await repository.remove("drop");
    const reader = await h.repository();
    expect(await reader.loadById("drop")).toBeNull();
    expect((await reader.loadAll()).map((task) => task.id)).toEqual(["keep"]);
  });

  it("remove(id) of a missing task resolves and changes nothing", async () => {
    const repository = await h.repository();
    const task = makeTask({ id: "stays" });
    await repository.save(task);
    await repository.remove("never-existed");
    expect(await (await h.repository()).loadAll()).toEqual([task]);
  });

  it("remove(id) takes the task's descendants with it and unlinks it from its parent", async () => {
    const repository = await h.repository();
    await repository.saveMany([
      makeTask({ id: "root", children: ["mid"] }),
      makeTask({ id: "mid", parentId: "root", children: ["leaf"] }),
      makeTask({ id: "leaf", parentId: "mid" }),
      makeTask({ id: "other" }),
    ]);
    await repository.remove("mid");
    const loaded = await (await h.repository()).loadAll();
    expect(loaded.map((task) => task.id).sort()).toEqual(["other", "root"]);
    expect(loaded.find((task) => task.id === "root")?.children).toEqual([]);
  });

  it("save() and saveMany() that would make a parent cycle are refused with CYCLE and write nothing", async () => {
    const repository = await h.repository();
    const a = makeTask({ id: "cycle-a" });
    const b = makeTask({ id: "cycle-b", parentId: "cycle-a" });
    await repository.saveMany([a, b]);
    const cycle = (error: unknown) => TaskStoreError.hasCode(error, "CYCLE");
    await expect(repository.save({ ...a, parentId: "cycle-b" })).rejects.toSatisfy(cycle);
    await expect(repository.save({ ...a, parentId: "cycle-a" })).rejects.toSatisfy(cycle);
    await expect(
      repository.saveMany([makeTask({ id: "cycle-c", parentId: "cycle-d" }), makeTask({ id: "cycle-d", parentId: "cycle-c" })]),
    ).rejects.toSatisfy(cycle);
    expect((await (await h.repository()).loadAll()).map((task) => [task.id, task.parentId])).toEqual([
      ["cycle-a", undefined],
      ["cycle-b", "cycle-a"],
    ]);
  });
}
