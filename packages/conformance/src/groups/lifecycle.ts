import { DRIVER_SPECIFICATION_VERSION, SCHEMA_VERSION, type StorageDriver, TaskStoreError } from "@taskstore/core";
import { expect, it } from "vitest";
import { makeTask } from "../fixtures.js";
import type { Harness } from "../harness.js";

export function lifecycleTests(h: Harness): void {
  it("a repository calls its driver's initialize() once and close() once, however much it is used", async () => {
    const calls = { initialize: 0, close: 0 };
    const counted = (driver: StorageDriver): StorageDriver =>
      new Proxy(driver, {
        get(target, key) {
          const value = Reflect.get(target, key, target);
          if ((key === "initialize" || key === "close") && typeof value === "function") {
            return async () => {
              calls[key]++;
              return value.call(target);
            };
          }
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
    const repository = await h.repository({}, counted);
    await repository.initialize();
    await repository.save(makeTask({ id: "after-init" }));
    expect((await repository.loadById("after-init"))?.id).toBe("after-init");
    await repository.loadAll();
    await repository.close();
    await repository.close();
    expect(calls.initialize).toBe(1);
    // A driver without close() has nothing to count.
    expect(calls.close).toBe(typeof (await h.driver()).close === "function" ? 1 : 0);
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
