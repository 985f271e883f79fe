import { MemoryStorageDriver, type StoredTask, TaskRepository, TaskStoreError } from "@taskstore/core";
import { describe, expect, it } from "vitest";

const makeTask = (overrides: Partial<StoredTask>): StoredTask => ({
  id: "t",
  title: "t",
  status: "pending",
  progress: { percent: 0 },
  metadata: {},
  createdAt: 0,
  updatedAt: 0,
  children: [],
  logs: [],
  ...overrides,
});

describe("TaskRepository writes", () => {
  // A stranded change set never resolves: this test then fails by its timeout.
  it("a write queued right after another resolves is written too (no change set is stranded)", { timeout: 10_000 }, async () => {
    for (const incremental of [true, false]) {
      const repository = new TaskRepository({ driver: new MemoryStorageDriver({ incremental }) });
      for (let i = 0; i < 20; i++) {
        // apply() directly: its caller wakes one microtask after the write resolves.
        await repository.apply([{ type: "remove", id: `gone-${i}`, at: 1 }]);
        await repository.apply([{ type: "put", task: makeTask({ id: `kept-${i}` }) }]);
      }
      expect(await repository.loadAll()).toHaveLength(20);
      expect(repository.metrics().pendingChanges).toBe(0);
      await repository.close();
    }
  });
});

describe("a driver whose manifest its methods do not back", () => {
  for (const [flag, method] of [
    ["incremental", "transact"],
    ["restore", "restore"],
    ["changeNotification", "watch"],
  ] as const) {
    it(`declaring ${flag} without ${method}() is refused with UNSUPPORTED on first use, naming both`, async () => {
      const driver = new MemoryStorageDriver();
      Object.defineProperty(driver, method, { value: undefined });
      Object.defineProperty(driver, "capabilities", { value: { ...driver.capabilities, [flag]: true } });
      const repository = new TaskRepository({ driver });
      await expect(repository.loadAll()).rejects.toSatisfy(
        (error) => TaskStoreError.hasCode(error, "UNSUPPORTED") && (error as Error).message.includes(`${method}()`),
      );
    });
  }
});
