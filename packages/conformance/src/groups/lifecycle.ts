import { DRIVER_SPECIFICATION_VERSION, SCHEMA_VERSION, TaskStoreError } from "@taskstore/core";
import { expect, it } from "vitest";
import { makeTask } from "../fixtures.js";
import type { Harness } from "../harness.js";

export function lifecycleTests(h: Harness): void {
  it("initialize() twice resolves and the store stays usable", async () => {
    const driver = await h.driver();
    await driver.initialize();
    const repository = await h.repository();
    await repository.save(makeTask({ id: "after-init" }));
    expect((await repository.loadById("after-init"))?.id).toBe("after-init");
  });

  it("an empty store loads version 1.0.0 and no tasks", async () => {
    const driver = await h.driver();
    const data = await driver.loadData();
    expect(data.version).toBe(SCHEMA_VERSION);
    expect(data.tasks).toHaveLength(0);
    const repository = await h.repository();
    expect(await repository.loadAll()).toEqual([]);
  });

  it("close() makes every change durable: a new instance sees a change made just before it", async () => {
    const manager = await h.manager();
    const id = await manager.create({ title: "written before close" });
    void manager.appendOutput(id, "last words");
    await manager.close();
    const reader = await h.repository();
    expect((await reader.loadById(id))?.logs.map((entry) => entry.output)).toEqual(["last words"]);
  });

  it("a closed repository refuses writes with CLOSED and its driver can be reopened", async () => {
    const repository = await h.repository();
    await repository.close();
    await expect(repository.save(makeTask())).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "CLOSED"));
    const again = await h.repository();
    expect(await again.loadAll()).toEqual([]);
  });

  it("loadData() hands over data the caller owns: changing it changes nothing the driver serves next", async () => {
    const repository = await h.repository();
    const task = makeTask({ id: "owned", logs: [{ timestamp: 1, output: "kept", type: "log" }], metadata: { deep: { n: 1 } } });
    await repository.save(task);
    const driver = await h.driver();
    const first = await driver.loadData();
    const loaded = first.tasks[0] as (typeof first.tasks)[number];
    loaded.title = "changed by the caller";
    loaded.logs.push({ timestamp: 2, output: "pushed by the caller", type: "log" });
    (loaded.metadata.deep as { n: number }).n = 2;
    first.tasks.push(makeTask({ id: "added-by-the-caller" }));
    const second = await driver.loadData();
    expect(second.tasks).toEqual([task]);
  });

  it("the driver was written against a version of the contract this suite checks", async (ctx) => {
    const driver = await h.driver();
    const declared = driver.specificationVersion;
    if (declared === undefined) ctx.skip("the driver declares no specificationVersion");
    expect(SUPPORTED_SPECIFICATIONS).toContain(declared);
  });
}

/** The contract versions this suite knows how to check. */
const SUPPORTED_SPECIFICATIONS: readonly string[] = [DRIVER_SPECIFICATION_VERSION];
