import { EventBus, TaskManager, TaskRepository, type TaskStoreError } from "@taskstore/core";
import { LossyProxy, type PostgresServer, startPostgres } from "@taskstore/test-services";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { driverOn, dropStore, freshSchema } from "./helpers.js";

let server: PostgresServer;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(() => server?.stop());

// Only a commit batch writes to `txlog` and commits: the proxy cuts it, and in "reply" mode drops
// the connections once the reply holds the COMMIT's CommandComplete.

async function appendThroughLossyConnection(
  mode: "reply" | "request",
): Promise<{ outputs: string[]; errors: TaskStoreError[]; cut: number }> {
  const proxy = await LossyProxy.start({
    host: server.host,
    port: server.port,
    isCommit: (chunk) => chunk.includes(".txlog") && chunk.includes("COMMIT"),
    replyComplete: (reply) => reply.includes("COMMIT\0"),
  });
  const schema = freshSchema();
  const url = new URL(server.url);
  url.hostname = "127.0.0.1";
  url.port = String(proxy.port);
  const bus = new EventBus();
  const errors: TaskStoreError[] = [];
  bus.on("persistence:error", ({ error }) => errors.push(error));
  const manager = new TaskManager(
    bus,
    new TaskRepository({ driver: driverOn(url.toString(), schema), retry: { initialDelayMs: 20, maxDelayMs: 200 } }),
  );
  try {
    await manager.loadFromRepository();
    const id = await manager.create({ title: "survives a lost reply" });
    await manager.appendOutput(id, "before");
    await manager.flush();
    proxy.armed = mode;
    await manager.appendOutput(id, "the line");
    // A change set core still holds (after a thrown transact) is written by a later flush.
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
    const check = driverOn(server.url, schema);
    await check.initialize();
    const stored = (await check.loadData()).tasks.find((task) => task.id === id);
    await check.close();
    return { outputs: stored?.logs.map((log) => log.output) ?? [], errors, cut: proxy.cut };
  } finally {
    await proxy.stop();
    await dropStore(server.url, schema);
  }
}

describe("PostgresStorageDriver when a commit's reply is lost", () => {
  it("a commit that landed but whose reply was lost is confirmed through txlog, not applied twice", async () => {
    const { outputs, errors, cut } = await appendThroughLossyConnection("reply");
    expect(cut).toBe(1);
    expect(outputs).toEqual(["before", "the line"]);
    // The driver settled it itself: transact() succeeded, core saw no failure.
    expect(errors).toEqual([]);
  });

  it("a commit lost before it reached the server is run again, once", async () => {
    const { outputs, errors, cut } = await appendThroughLossyConnection("request");
    expect(cut).toBe(1);
    expect(outputs).toEqual(["before", "the line"]);
    expect(errors).toEqual([]);
  });
});
