import { expect, it } from "vitest";
import { byId } from "../fixtures.js";
import type { Harness } from "../harness.js";
import { need } from "../waiting.js";

async function writeSome(h: Harness): Promise<string> {
  const manager = await h.manager();
  const id = await manager.create({ title: "outlives its process", metadata: { kept: [1, "two"] } });
  await manager.start(id);
  await manager.setProgress(id, { percent: 40, message: "half way" });
  await manager.appendOutput(id, "line one", "stdout");
  await manager.appendOutput(id, "line two", "stderr", "build");
  await manager.close();
  return id;
}

export function reopeningTests(h: Harness): void {
  it("data survives close() and is read whole by a new instance", async (ctx) => {
    await need(h, ctx, "persistent");
    const id = await writeSome(h);
    const before = await (await h.repository()).loadAll();
    const task = before.find((t) => t.id === id);
    expect(task).toMatchObject({ status: "running", progress: { percent: 40, message: "half way" }, metadata: { kept: [1, "two"] } });
    expect(task?.logs.map((entry) => [entry.output, entry.type, entry.source])).toEqual([
      ["line one", "stdout", undefined],
      ["line two", "stderr", "build"],
    ]);
  });

  it("data survives a restart of the server behind the store", async (ctx) => {
    await need(h, ctx, "persistent");
    const restart = h.current.restart;
    if (!restart) ctx.skip("the harness cannot restart this store's server (setup() gave no restart())");
    const id = await writeSome(h);
    const before = byId(await (await h.repository()).loadAll());
    await restart?.call(h.current);
    const after = byId(await (await h.repository()).loadAll());
    expect(after).toEqual(before);
    expect(after.find((task) => task.id === id)?.logs).toHaveLength(2);
  });
}
