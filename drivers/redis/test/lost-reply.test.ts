import { connect, createServer, type Server, type Socket } from "node:net";
import { EventBus, TaskManager, TaskRepository, type TaskStoreError } from "@taskstore/core";
import { RedisStorageDriver } from "@taskstore/driver-redis";
import { startRedis } from "@taskstore/test-services";
import { afterAll, describe, expect, it } from "vitest";
import { deleteStore, uniquePrefix } from "./helpers.js";

const server = await startRedis();
afterAll(() => server.stop());

/**
 * A TCP proxy on loopback between the driver and redis-server. Once armed, the first command the
 * driver sends that names a commit marker (`:tx:`, only the commit script does) is cut off:
 * "reply" forwards it, lets the server run it, then drops the connection before the reply gets
 * back; "request" drops the connection without forwarding it (the script never runs).
 */
class LossyProxy {
  armed: "reply" | "request" | undefined;
  cut = 0;
  private readonly sockets = new Set<Socket>();
  private constructor(private readonly listener: Server) {}

  static async start(port: number): Promise<LossyProxy> {
    const listener = createServer();
    const proxy = new LossyProxy(listener);
    listener.on("connection", (client) => proxy.pipe(client, port));
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  get url(): string {
    const address = this.listener.address();
    return `redis://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.listener.close(resolve));
  }

  private pipe(client: Socket, port: number): void {
    const upstream = connect(port, "127.0.0.1");
    this.sockets.add(client).add(upstream);
    let dropReply = false;
    const drop = () => {
      this.cut++;
      client.destroy();
      upstream.destroy();
    };
    client.on("data", (chunk) => {
      if (this.armed && chunk.includes(":tx:")) {
        const mode = this.armed;
        this.armed = undefined;
        if (mode === "request") return drop();
        dropReply = true;
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk) => (dropReply ? drop() : client.write(chunk)));
    for (const socket of [client, upstream]) {
      socket.on("error", () => undefined);
      socket.on("close", () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(socket);
      });
    }
  }
}

async function appendThroughLossyConnection(
  mode: "reply" | "request",
): Promise<{ outputs: string[]; errors: TaskStoreError[]; cut: number }> {
  const proxy = await LossyProxy.start(server.port);
  const prefix = uniquePrefix("lost-reply");
  const bus = new EventBus();
  const errors: TaskStoreError[] = [];
  bus.on("persistence:error", ({ error }) => errors.push(error));
  const manager = new TaskManager(
    bus,
    new TaskRepository({ driver: new RedisStorageDriver({ url: proxy.url, prefix }), retry: { initialDelayMs: 20, maxDelayMs: 200 } }),
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
