import { type StorageData, TaskStoreError } from "@taskstore/core";
import { expect, it } from "vitest";
import { LegacyOnceDriver, makeTask } from "../fixtures.js";
import type { Harness } from "../harness.js";

export function compatibilityTests(h: Harness): void {
  it("unknown fields written by a newer minor version survive a write, at every level", async () => {
    const driver = await h.driver();
    const task = { ...makeTask({ id: "future" }), priority: "high", logs: [{ timestamp: 5, output: "old", type: "log", color: "red" }] };
    await driver.saveData({
      version: "1.4.0",
      tasks: [task],
      metadata: { lastUpdated: 1, totalTasks: 1, host: "laptop" },
      labels: ["a", "b"],
    } as unknown as StorageData);
    const manager = await h.manager();
    await manager.update("future", { title: "touched by 1.0.0" });
    await manager.appendOutput("future", "new");
    const data = (await (await h.driver()).loadData()) as unknown as Record<string, unknown>;
    expect(data.version).toBe("1.4.0");
    expect(data.labels).toEqual(["a", "b"]);
    expect((data.metadata as Record<string, unknown>).host).toBe("laptop");
    const stored = (data.tasks as Record<string, unknown>[])[0] as Record<string, unknown>;
    expect(stored).toMatchObject({ title: "touched by 1.0.0", priority: "high" });
    expect(stored.logs).toMatchObject([{ output: "old", color: "red" }, { output: "new" }]);
  });

  it("a newer major version is readable and refused for writing with VERSION_UNSUPPORTED", async () => {
    const driver = await h.driver();
    const task = makeTask({ id: "from-v2" });
    await driver.saveData({ version: "2.0.0", tasks: [task], metadata: { lastUpdated: 1, totalTasks: 1 } });
    const repository = await h.repository();
    expect((await repository.loadAll()).map((t) => t.id)).toEqual(["from-v2"]);
    const refused = (error: unknown) => TaskStoreError.hasCode(error, "VERSION_UNSUPPORTED");
    await expect(repository.save(makeTask())).rejects.toSatisfy(refused);
    await expect(repository.remove("from-v2")).rejects.toSatisfy(refused);
    const manager = await h.manager();
    await expect(manager.appendOutput("from-v2", "x")).rejects.toSatisfy(refused);
    const after = await (await h.driver()).loadData();
    expect(after.version).toBe("2.0.0");
    expect(after.tasks).toEqual([task]);
  });

  it("a legacy todo array is migrated on load, the original backed up first", async () => {
    const legacy = [
      { text: "Old todo item", completed: false },
      { text: "Done already", completed: true },
    ];
    let wrapper: LegacyOnceDriver | undefined;
    const repository = await h.repository({}, (driver) => {
      wrapper = new LegacyOnceDriver(driver, legacy);
      return wrapper;
    });
    const tasks = await repository.loadAll();
    expect(tasks.map((t) => [t.title, t.status, t.progress.percent])).toEqual([
      ["Old todo item", "pending", 0],
      ["Done already", "completed", 100],
    ]);
    const calls = wrapper?.calls ?? [];
    expect(calls.indexOf("backup")).toBeGreaterThan(-1);
    expect(calls.indexOf("backup")).toBeLessThan(calls.indexOf("saveData"));
    const stored = await (await h.repository()).loadAll();
    expect(stored).toEqual(tasks);
  });

  it("migrateFromLegacy() on a current store changes nothing", async () => {
    const repository = await h.repository();
    const task = makeTask();
    await repository.save(task);
    expect(await repository.migrateFromLegacy()).toEqual({ migrated: 0 });
    expect(await (await h.repository()).loadAll()).toEqual([task]);
  });
}

export function scaleTests(h: Harness, size: number): void {
  it(`a store of ${size.toLocaleString("en")} tasks saves, loads whole and takes one more change`, async () => {
    const repository = await h.repository();
    const tasks = Array.from({ length: size }, (_, i) =>
      makeTask({
        id: `bulk-${i}`,
        title: `Bulk task ${i}`,
        logs: i % 100 === 0 ? [{ timestamp: i, output: `log ${i}`, type: "log" }] : [],
      }),
    );
    await repository.saveMany(tasks);
    const manager = await h.manager();
    expect(manager.list()).toHaveLength(size);
    await manager.appendOutput(`bulk-${size - 1}`, "one more");
    const loaded = await (await h.repository()).loadAll();
    expect(loaded).toHaveLength(size);
    expect(loaded.find((t) => t.id === `bulk-${size - 1}`)?.logs.map((entry) => entry.output)).toEqual(["one more"]);
    expect(loaded.find((t) => t.id === "bulk-100")?.logs).toHaveLength(1);
  });
}
