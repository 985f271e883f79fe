// The seed's "Custom Storage Driver" example, as written there with its imports added and its
// placeholder bodies filled in (an in-process object stands in for the "custom source").
import { EventBus, type StorageData, type StorageDriver, TaskManager, TaskRepository } from "@taskstore/core";
import { expect, it } from "vitest";

const customSource: { data?: string } = {};

class CustomStorageDriver implements StorageDriver {
  async initialize(): Promise<void> {
    /* custom init */
  }
  async loadData(): Promise<StorageData> {
    /* load from custom source */
    return customSource.data ? JSON.parse(customSource.data) : { version: "1.0.0", tasks: [], metadata: { lastUpdated: 0, totalTasks: 0 } };
  }
  async saveData(data: StorageData): Promise<void> {
    /* save to custom destination */
    customSource.data = JSON.stringify(data);
  }
  // ... implement other methods
  async backup(): Promise<void> {}
  async acquireLock(): Promise<void> {}
  async releaseLock(): Promise<void> {}
}

const repository = new TaskRepository({
  driver: new CustomStorageDriver(),
});

it("the seed's Custom Storage Driver example runs as written and persists through its driver", async () => {
  const taskManager = new TaskManager(new EventBus(), repository);
  await taskManager.loadFromRepository();
  const taskId = await taskManager.create({ title: "Build feature", description: "Add new persistence layer" });
  await taskManager.update(taskId, { title: "Build awesome feature" });
  await taskManager.appendOutput(taskId, "done");
  const stored = JSON.parse(customSource.data ?? "{}") as StorageData;
  expect(stored.tasks).toHaveLength(1);
  expect(stored.tasks[0]).toMatchObject({ id: taskId, title: "Build awesome feature", logs: [{ output: "done" }] });
  expect(await new TaskRepository({ driver: new CustomStorageDriver() }).loadById(taskId)).toMatchObject({
    title: "Build awesome feature",
  });
  await taskManager.close();
});
