import { EventBus, TaskManager, TaskRepository, type TaskStoreError } from "@taskstore/core";
import { RedisStorageDriver } from "@taskstore/driver-redis";
import { startRedis } from "@taskstore/test-services";
import { describe, expect, it } from "vitest";

describe("RedisStorageDriver and a server killed mid-run", () => {
  it("TaskManager keeps working in memory while the server is down, and afterwards every acknowledged change is in Redis", async () => {
    const server = await startRedis({ dedicated: true, appendonly: true });
    try {
      const prefix = "restart";
      const bus = new EventBus();
      const errors: TaskStoreError[] = [];
      bus.on("persistence:error", ({ error }) => errors.push(error));
      const repository = new TaskRepository({
        driver: new RedisStorageDriver({ url: server.url, prefix }),
        retry: { initialDelayMs: 20, maxDelayMs: 200 },
      });
      const manager = new TaskManager(bus, repository);
      await manager.loadFromRepository();

      const acknowledged: { id: string; lines: string[]; percent: number }[] = [];
      const work = async (round: number) => {
        const id = await manager.create({ title: `round ${round}` });
        const entry = { id, lines: [] as string[], percent: 0 };
        acknowledged.push(entry);
        for (let i = 0; i < 5; i++) {
          await manager.appendOutput(id, `round ${round} line ${i}`);
          entry.lines.push(`round ${round} line ${i}`);
        }
        await manager.setProgress(id, { percent: round % 100 });
        entry.percent = round % 100;
      };

      let round = 0;
      for (; round < 20; round++) await work(round);
      // Killed while ten rounds are in flight.
      const inFlight = Promise.all([20, 21, 22, 23, 24, 25, 26, 27, 28, 29].map((n) => work(n)));
      await server.kill();
      await inFlight;
      round = 30;
      // The server is down: every operation still resolves, in memory, and the failure is emitted.
      for (; round < 40; round++) await work(round);
      expect(errors.length).toBeGreaterThan(0);
      expect(errors.every((error) => error.code === "STORAGE_UNAVAILABLE")).toBe(true);
      expect(manager.findById(acknowledged.at(-1)?.id as string)?.logs).toHaveLength(5);
      await server.restart();
      for (; round < 60; round++) await work(round);
      // flush() throws while the client is still reconnecting; once it is back, everything is written.
      await eventually(() =>
        manager.flush().then(
          () => true,
          () => false,
        ),
      );
      await manager.close();

      const check = new RedisStorageDriver({ url: server.url, prefix });
      await check.initialize();
      const stored = new Map((await check.loadData()).tasks.map((task) => [task.id, task]));
      await check.close();
      expect(stored.size).toBe(60);
      for (const entry of acknowledged) {
        const task = stored.get(entry.id);
        expect(task?.progress.percent, entry.id).toBe(entry.percent);
        // Exactly the acknowledged lines, once each and in order: a commit whose reply the kill
        // cut off is looked up by its id, never applied a second time.
        expect(
          task?.logs.map((log) => log.output),
          entry.id,
        ).toEqual(entry.lines);
      }

      // And it is durable: a second crash and restart (appendonly, fsync always) keeps all of it.
      await server.kill();
      await server.restart();
      const again = new RedisStorageDriver({ url: server.url, prefix });
      await again.initialize();
      expect((await again.loadData()).tasks).toHaveLength(60);
      await again.close();
    } finally {
      await server.stop();
    }
  });
});

async function eventually(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
