import { randomUUID } from "node:crypto";
import { EventBus, MemoryStorageDriver, type TaskEvents, TaskManager, TaskRepository, TaskStoreError } from "@taskstore/core";
import { describe, expect, it } from "vitest";

const corruptions: [string, string][] = [
  ["empty", ""],
  ["truncated", '{"version":"1.0.0","tasks":[{"id":"a","title":"x"'],
  ["not JSON", "<html>502 Bad Gateway</html>"],
  ["failing the schema", JSON.stringify({ version: "1.0.0", tasks: [{ id: "a", title: 7 }], metadata: { lastUpdated: 0, totalTasks: 1 } })],
];

async function storeWithBackup() {
  const store = randomUUID();
  const driver = new MemoryStorageDriver({ store });
  const repository = new TaskRepository({ driver });
  const manager = new TaskManager(new EventBus(), repository);
  await manager.loadFromRepository();
  const id = await manager.create({ title: "in the backup" });
  await repository.backup();
  await manager.close();
  return { store, id };
}

describe("recovery of an unreadable store", () => {
  for (const [kind, text] of corruptions) {
    it(`a main store that is ${kind} is moved aside, the backup restored, and an event says so`, async () => {
      const { store, id } = await storeWithBackup();
      const driver = new MemoryStorageDriver({ store });
      driver.writeRaw(text);
      const bus = new EventBus();
      const recovered: TaskEvents["storage:recovered"][] = [];
      bus.on("storage:recovered", (event) => recovered.push(event));
      const manager = new TaskManager(bus, new TaskRepository({ driver }));
      await manager.loadFromRepository();
      expect(manager.list().map((task) => task.id)).toEqual([id]);
      expect(recovered).toHaveLength(1);
      expect(recovered[0]?.reason.code).toBe("CORRUPT_DATA");
      expect(recovered[0]?.result.movedTo).toMatch(/aside/);
      expect(driver.movedAside()).toEqual([text]); // kept, never deleted
      await manager.appendOutput(id, "works after recovery");
      await manager.close();
    });

    it(`a main store that is ${kind} with no backup fails with CORRUPT_DATA and is left untouched`, async () => {
      const driver = new MemoryStorageDriver();
      driver.writeRaw(text);
      const repository = new TaskRepository({ driver });
      await expect(repository.loadAll()).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "CORRUPT_DATA"));
      const manager = new TaskManager(new EventBus(), repository);
      await expect(manager.loadFromRepository()).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "CORRUPT_DATA"));
      expect(driver.readRaw()).toBe(text);
      expect(driver.movedAside()).toEqual([]);
    });
  }

  it("a write to an unreadable store recovers first and then applies the change to the restored data", async () => {
    const { store, id } = await storeWithBackup();
    const driver = new MemoryStorageDriver({ store, incremental: false });
    driver.writeRaw("{broken");
    const repository = new TaskRepository({ driver });
    await repository.remove(id);
    expect(await repository.loadAll()).toEqual([]);
    expect(driver.movedAside()).toEqual(["{broken"]);
  });

  it("a corrupt backup is not restored over the main store: CORRUPT_DATA", async () => {
    const store = randomUUID();
    const driver = new MemoryStorageDriver({ store });
    driver.writeRaw("not json either");
    await driver.backup();
    driver.writeRaw("{");
    await expect(new TaskRepository({ driver }).loadAll()).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "CORRUPT_DATA"));
  });
});

describe("legacy todo stores", () => {
  const legacy = [
    { text: "Old todo item", completed: false },
    { text: "Shipped", completed: true },
  ];

  it("are migrated on load: tasks in the current format, the original kept as the backup, an event emitted", async () => {
    const driver = new MemoryStorageDriver();
    driver.writeRaw(JSON.stringify(legacy));
    const bus = new EventBus();
    const migrated: TaskEvents["storage:migrated"][] = [];
    bus.on("storage:migrated", (event) => migrated.push(event));
    const manager = new TaskManager(bus, new TaskRepository({ driver }));
    await manager.loadFromRepository();
    expect(manager.list().map((task) => [task.title, task.status, task.progress.percent])).toEqual([
      ["Old todo item", "pending", 0],
      ["Shipped", "completed", 100],
    ]);
    expect(migrated).toEqual([{ tasks: 2 }]);
    expect(JSON.parse(driver.readRaw() ?? "").version).toBe("1.0.0");
    await driver.restore(); // the backup is the original legacy file
    expect(JSON.parse(driver.readRaw() ?? "")).toEqual(legacy);
    await manager.close();
  });

  it("migrateFromLegacy() converts explicitly and reports the count", async () => {
    const driver = new MemoryStorageDriver();
    driver.writeRaw(JSON.stringify(legacy));
    const repository = new TaskRepository({ driver });
    expect(await repository.migrateFromLegacy()).toEqual({ migrated: 2 });
    expect(await repository.migrateFromLegacy()).toEqual({ migrated: 0 });
    expect(await repository.loadAll()).toHaveLength(2);
  });
});

describe("a store damaged while a manager is running", () => {
  it("is recovered from its backup by the next write, which then succeeds", async () => {
    const { store, id } = await storeWithBackup();
    const driver = new MemoryStorageDriver({ store });
    const bus = new EventBus();
    const recovered: TaskEvents["storage:recovered"][] = [];
    bus.on("storage:recovered", (event) => recovered.push(event));
    const manager = new TaskManager(bus, new TaskRepository({ driver }));
    await manager.loadFromRepository();
    driver.writeRaw('{"version":"1.0.0","tasks":['); // damaged under the running manager
    await manager.appendOutput(id, "after the damage");
    expect(recovered).toHaveLength(1);
    const stored = await new TaskRepository({ driver: new MemoryStorageDriver({ store }) }).loadById(id);
    expect(stored?.logs.map((entry) => entry.output)).toEqual(["after the damage"]);
    await manager.close();
  });
});

describe("sections under the driver's lock", () => {
  it("take turns within one repository, even when the driver lets its holder acquire again", async () => {
    // A driver whose acquireLock() returns at once for its holder, as some real drivers do.
    const driver = new MemoryStorageDriver();
    let held = false;
    let overlapped = false;
    const acquire = driver.acquireLock.bind(driver);
    const release = driver.releaseLock.bind(driver);
    driver.acquireLock = async () => {
      // Marked held before the first await, so a second section that starts meanwhile sees it.
      if (held) {
        overlapped = true;
        return;
      }
      held = true;
      await acquire();
    };
    driver.releaseLock = async () => {
      held = false;
      await release();
    };
    const repository = new TaskRepository({ driver });
    await repository.backup();
    await Promise.all([repository.restore(), repository.restore(), repository.restore()]);
    expect(overlapped).toBe(false);
  });
});

describe("a store written by a newer major version", () => {
  it("whose tasks this version cannot read fails with VERSION_UNSUPPORTED and is never recovered over", async () => {
    const { store } = await storeWithBackup();
    const driver = new MemoryStorageDriver({ store });
    const junk = JSON.stringify({ version: "2.0.0", tasks: [null, 3, { id: 5 }], metadata: { lastUpdated: 1, totalTasks: 3 } });
    driver.writeRaw(junk);
    const refused = (error: unknown) => TaskStoreError.hasCode(error, "VERSION_UNSUPPORTED");
    const repository = new TaskRepository({ driver });
    await expect(repository.loadAll()).rejects.toSatisfy(refused);
    await expect(repository.loadAll()).rejects.toThrow(/tasks\[0\]/);
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new MemoryStorageDriver({ store }) }));
    await expect(manager.loadFromRepository()).rejects.toSatisfy(refused);
    expect(driver.movedAside()).toEqual([]);
    expect(await new MemoryStorageDriver({ store }).loadData()).toEqual(JSON.parse(junk));
  });

  it("whose tasks have this version's shape is read, unknown fields kept", async () => {
    const driver = new MemoryStorageDriver({ store: randomUUID() });
    const task = {
      id: "v2",
      title: "from 2.0",
      status: "pending",
      progress: { percent: 0 },
      metadata: {},
      createdAt: 1,
      updatedAt: 1,
      children: [],
      logs: [],
      lane: 3,
    };
    driver.writeRaw(JSON.stringify({ version: "2.0.0", tasks: [task], metadata: { lastUpdated: 1, totalTasks: 1 } }));
    const tasks = await new TaskRepository({ driver }).loadAll();
    expect(tasks).toEqual([task]);
  });
});
