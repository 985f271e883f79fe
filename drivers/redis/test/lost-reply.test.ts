import { EventBus, TaskManager, TaskRepository, type TaskStoreError } from "@taskstore/core";
import { RedisStorageDriver } from "@taskstore/driver-redis";
import { LossyProxy, startRedis } from "@taskstore/test-services";
import { afterAll, describe, expect, it } from "vitest";
import { deleteStore, uniquePrefix } from "./helpers.js";

const server = await startRedis();
afterAll(() => server.stop());

// The commit script is the only command naming a commit marker (`:tx:`): the proxy cuts it.

async function appendThroughLossyConnection(
  mode: "reply" | "request",
): Promise<{ outputs: string[]; errors: TaskStoreError[]; cut: number }> {
  const proxy = await LossyProxy.start({ host: "127.0.0.1", port: server.port, isCommit: (chunk) => chunk.includes(":tx:") });
  const prefix = uniquePrefix("lost-reply");
  const bus = new EventBus();
  const errors: TaskStoreError[] = [];
  bus.on("persistence:error", ({ error }) => errors.push(error));
  const manager = new TaskManager(
    bus,
    new TaskRepository({
      driver: new RedisStorageDriver({ url: `redis://127.0.0.1:${proxy.port}`, prefix }),
      retry: { initialDelayMs: 20, maxDelayMs: 200 },
    }),
  );
  try {
    await manager.loadFromRepository();
    const id = await manager.create({ title: "survives a lost reply" });
    await manager.appendOutput(id, "before");
    await manager.flush();
    proxy.armed = mode;
    await manager.appendOutput(id, "the line");
    // A commit core still holds (after a thrown transact) is written by a later flush, once the
    // client has reconnected.
    for (let i = 0; i < 100; i++) {
      if (
        await manager.flush().then(
          () => true,
          () => false,
        )
      )
        break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await manager.close();
    const check = new RedisStorageDriver({ url: server.url, prefix });
    await check.initialize();
    const stored = (await check.loadData()).tasks.find((task) => task.id === id);
    await check.close();
    return { outputs: stored?.logs.map((log) => log.output) ?? [], errors, cut: proxy.cut };
  } finally {
    await proxy.stop();
    await deleteStore({ url: server.url }, prefix);
  }
}

describe("RedisStorageDriver when a commit's reply is lost", () => {
  it("a commit that ran but whose reply was lost is confirmed after the reconnect, not applied twice", async () => {
    const { outputs, errors, cut } = await appendThroughLossyConnection("reply");
    expect(cut).toBe(1);
    expect(outputs.filter((line) => line === "the line")).toHaveLength(1);
    expect(outputs).toEqual(["before", "the line"]);
    // The driver settled it itself: transact() succeeded, core saw no failure.
    expect(errors).toEqual([]);
  });

  it("a commit lost before it reached the server is run again after the reconnect, once", async () => {
    const { outputs, errors, cut } = await appendThroughLossyConnection("request");
    expect(cut).toBe(1);
    expect(outputs).toEqual(["before", "the line"]);
    expect(errors).toEqual([]);
  });
});
