import { randomUUID } from "node:crypto";
import {
  ConflictError,
  EventBus,
  MemoryStorageDriver,
  type TaskEvents,
  TaskManager,
  TaskRepository,
  TaskStoreError,
} from "@taskstore/core";
import { describe, expect, it } from "vitest";
import { eventually, FlakyDriver } from "./helpers.js";

for (const incremental of [true, false]) {
  describe(`graceful degradation (${incremental ? "incremental" : "plain"} driver)`, () => {
    const open = () => {
      const store = randomUUID();
      const flaky = new FlakyDriver(new MemoryStorageDriver({ store, incremental }));
      const bus = new EventBus();
      const repository = new TaskRepository({ driver: flaky, retry: { initialDelayMs: 10, maxDelayMs: 50 } });
      const manager = new TaskManager(bus, repository);
      const stored = () => new TaskRepository({ driver: new MemoryStorageDriver({ store }) }).loadAll();
      return { flaky, bus, repository, manager, stored };
    };

    it("with degrade: false a write that storage fails rejects with the storage error, and nothing is queued", async () => {
      const store = randomUUID();
      const flaky = new FlakyDriver(new MemoryStorageDriver({ store, incremental }));
      const repository = new TaskRepository({ driver: flaky, degrade: false });
      const manager = new TaskManager(new EventBus(), repository);
      await manager.loadFromRepository();
      const id = await manager.create({ title: "before the fault" });
      flaky.broken = true;
      await expect(manager.appendOutput(id, "refused")).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "STORAGE_UNAVAILABLE"));
      expect(repository.pendingChanges()).toEqual([]);
      flaky.broken = false;
      await manager.close(); // nothing left to write: close() does not try the store again
      const stored = await new TaskRepository({ driver: new MemoryStorageDriver({ store }) }).loadAll();
      expect(stored.map((task) => task.logs.length)).toEqual([0]);
    });

    it("operations succeed in memory while storage fails, the error is emitted, and flush() writes everything once it works", async () => {
      const { flaky, bus, repository, manager, stored } = open();
      await manager.loadFromRepository();
      const id = await manager.create({ title: "before the fault" });
      const errors: TaskEvents["persistence:error"][] = [];
      const restored: TaskEvents["persistence:restored"][] = [];
      bus.on("persistence:error", (event) => errors.push(event));
      bus.on("persistence:restored", (event) => restored.push(event));

      flaky.broken = true;
      await manager.start(id);
      await manager.appendOutput(id, "during the outage");
      await manager.setProgress(id, { percent: 60 });
      const second = await manager.create({ title: "created during the outage", parentId: id });
      await manager.update(id, { description: "edited offline" });

      expect(manager.findById(id)).toMatchObject({ status: "running", progress: { percent: 60 }, description: "edited offline" });
      expect(manager.findById(second)?.parentId).toBe(id);
      expect(errors.length).toBeGreaterThan(0);
      expect(errors[0]?.error.code).toBe("STORAGE_UNAVAILABLE");
      expect(errors.at(-1)?.pending).toBe(5);
      expect(repository.metrics().pendingChanges).toBe(5);
      expect(repository.metrics().errors.STORAGE_UNAVAILABLE).toBeGreaterThan(0);
      const during = await stored();
      expect(during.map((task) => task.id)).toEqual([id]);
      expect(during[0]?.status).toBe("pending");
      await expect(manager.flush()).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "STORAGE_UNAVAILABLE"));

      flaky.broken = false;
      await manager.flush();
      const after = await stored();
      expect(after.find((task) => task.id === id)).toMatchObject({
        status: "running",
        progress: { percent: 60 },
        description: "edited offline",
        children: [second],
        logs: [{ output: "during the outage" }],
      });
      expect(after.find((task) => task.id === second)?.parentId).toBe(id);
      expect(restored.at(-1)?.written).toBe(5);
      expect(repository.metrics().pendingChanges).toBe(0);
      await manager.close();
    });

    it("pending changes are retried in the background without flush()", async () => {
      const { flaky, bus, manager, stored } = open();
      await manager.loadFromRepository();
      flaky.broken = true;
      const id = await manager.create({ title: "queued" });
      await manager.appendOutput(id, "queued line");
      let restored = false;
      bus.on("persistence:restored", () => {
        restored = true;
      });
      const failuresBefore = flaky.failures;
      await eventually(() => flaky.failures > failuresBefore); // it keeps trying
      flaky.broken = false;
      await eventually(() => restored);
      expect((await stored())[0]?.logs.map((entry) => entry.output)).toEqual(["queued line"]);
      await manager.close();
    });

    it("refresh() during an outage keeps the changes not yet written", async () => {
      const { flaky, manager } = open();
      await manager.loadFromRepository();
      const id = await manager.create({ title: "t" });
      flaky.broken = true;
      await manager.appendOutput(id, "kept");
      flaky.broken = false; // loadAll works again, the retry has not run yet
      await manager.refresh();
      expect(manager.findById(id)?.logs.map((entry) => entry.output)).toEqual(["kept"]);
      await manager.close();
    });

    it("direct repository writes do not degrade: they reject with STORAGE_UNAVAILABLE", async () => {
      const { flaky, repository } = open();
      flaky.broken = true;
      await expect(repository.remove("some-id")).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "STORAGE_UNAVAILABLE"));
      expect(repository.metrics().pendingChanges).toBe(0);
      flaky.broken = false;
      await repository.close();
    });

    it("close() while storage fails releases the driver and throws, saying the changes are not durable", async () => {
      const { flaky, manager } = open();
      await manager.loadFromRepository();
      flaky.broken = true;
      await manager.create({ title: "lost at close" });
      await expect(manager.close()).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "STORAGE_UNAVAILABLE"));
    });
  });
}

describe("a change refused by the stored state after an outage", () => {
  it("is dropped with a persistence:conflict event, and later changes are still written", async () => {
    const store = randomUUID();
    const flaky = new FlakyDriver(new MemoryStorageDriver({ store }));
    const bus = new EventBus();
    const manager = new TaskManager(bus, new TaskRepository({ driver: flaky, retry: { initialDelayMs: 10_000 } }));
    await manager.loadFromRepository();
    const id = await manager.create({ title: "contested" });
    const other = new TaskManager(new EventBus(), new TaskRepository({ driver: new MemoryStorageDriver({ store }) }));
    await other.loadFromRepository();

    flaky.broken = true;
    await manager.start(id); // accepted in memory, queued
    await other.cancel(id); // meanwhile another process cancels it
    const conflicts: TaskEvents["persistence:conflict"][] = [];
    bus.on("persistence:conflict", (event) => conflicts.push(event));
    flaky.broken = false;
    await manager.flush();
    expect(conflicts.map((event) => event.error.code)).toEqual(["INVALID_TRANSITION"]);
    const reader = new TaskRepository({ driver: new MemoryStorageDriver({ store }) });
    expect((await reader.loadById(id))?.status).toBe("cancelled");
    await manager.close();
    await other.close();
  });
});

describe("contention the driver's retries could not outlast", () => {
  it("keeps the queued changes (CONFLICT of the whole write is retried like an outage) and writes them later", async () => {
    const store = randomUUID();
    const flaky = new FlakyDriver(new MemoryStorageDriver({ store }), () => new ConflictError("memory: the store kept changing"));
    const bus = new EventBus();
    const errors: TaskEvents["persistence:error"][] = [];
    bus.on("persistence:error", (event) => errors.push(event));
    const manager = new TaskManager(bus, new TaskRepository({ driver: flaky, retry: { initialDelayMs: 10_000 } }));
    await manager.loadFromRepository();
    const id = await manager.create({ title: "contended" });
    flaky.broken = true;
    await manager.appendOutput(id, "kept through the storm");
    expect(errors.at(-1)?.error.code).toBe("CONFLICT");
    expect(errors.at(-1)?.pending).toBe(1);
    flaky.broken = false;
    await manager.flush();
    const stored = await new TaskRepository({ driver: new MemoryStorageDriver({ store }) }).loadById(id);
    expect(stored?.logs.map((entry) => entry.output)).toEqual(["kept through the storm"]);
    await manager.close();
  });
});

describe("a write whose outcome stayed unknown", () => {
  it("is retried alone under the same commitId, so a driver that records the id applies it once", async () => {
    const store = randomUUID();
    const inner = new MemoryStorageDriver({ store });
    const seen: { commitId: string | undefined; lines: string[] }[] = [];
    const applied = new Set<string>();
    let loseNextReply = false;
    // Commits, then loses the reply (as a server that died after COMMIT): the outcome is unknown.
    const driver = Object.assign(Object.create(inner) as MemoryStorageDriver, {
      async transact(work: Parameters<NonNullable<MemoryStorageDriver["transact"]>>[0], options?: { commitId?: string }) {
        const commitId = options?.commitId;
        if (commitId && applied.has(commitId)) return; // it landed before: not again
        await (inner.transact as NonNullable<MemoryStorageDriver["transact"]>).call(inner, (reader) =>
          work(reader).then((writes) => {
            seen.push({ commitId, lines: writes.logs.flatMap((log) => log.entries.map((entry) => entry.output)) });
            return writes;
          }),
        );
        if (commitId) applied.add(commitId);
        if (loseNextReply) {
          loseNextReply = false;
          throw new TaskStoreError("STORAGE_UNAVAILABLE", "the reply to the commit was lost");
        }
      },
    });
    const repository = new TaskRepository({ driver, retry: { initialDelayMs: 10, maxDelayMs: 20 } });
    const manager = new TaskManager(new EventBus(), repository);
    await manager.loadFromRepository();
    const id = await manager.create({ title: "in doubt" });
    loseNextReply = true;
    await manager.appendOutput(id, "landed, reply lost"); // degraded: resolved, queued
    await manager.appendOutput(id, "queued after"); // must not join the batch in doubt
    await manager.flush();
    const stored = await new TaskRepository({ driver: new MemoryStorageDriver({ store }) }).loadById(id);
    expect(stored?.logs.map((entry) => entry.output)).toEqual(["landed, reply lost", "queued after"]);
    const doubted = seen.find((call) => call.lines.includes("landed, reply lost"));
    const after = seen.find((call) => call.lines.includes("queued after"));
    expect(doubted?.lines).toEqual(["landed, reply lost"]);
    expect(after?.commitId).not.toBe(doubted?.commitId);
    await manager.close();
  });
});
