import { connect, createServer, type Server, type Socket } from "node:net";
import { EventBus, TaskManager, TaskRepository, type TaskStoreError } from "@taskstore/core";
import { type PostgresServer, startPostgres } from "@taskstore/test-services";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { driverOn, dropStore, freshSchema } from "./helpers.js";

let server: PostgresServer;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(() => server?.stop());

/**
 * A TCP proxy on loopback between the driver's pool and the server. Once armed, the first query
 * the driver sends that writes to `txlog` and commits (only a commit batch does) is cut off:
 * "reply" forwards it, lets the server commit it, then drops both connections once the reply
 * (up to the COMMIT's CommandComplete) arrives, without passing it on; "request" drops the
 * connections without forwarding it (the transaction never commits).
 */
class LossyProxy {
  armed: "reply" | "request" | undefined;
  cut = 0;
  private readonly sockets = new Set<Socket>();
  private constructor(private readonly listener: Server) {}

  static async start(host: string, port: number): Promise<LossyProxy> {
    const listener = createServer();
    const proxy = new LossyProxy(listener);
    listener.on("connection", (client) => proxy.pipe(client, host, port));
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  get port(): number {
    const address = this.listener.address();
    return typeof address === "object" && address ? address.port : 0;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.listener.close(resolve));
  }

  private pipe(client: Socket, host: string, port: number): void {
    const upstream = connect(port, host);
    this.sockets.add(client).add(upstream);
    let held: Buffer | undefined;
    const drop = () => {
      this.cut++;
      client.destroy();
      upstream.destroy();
    };
    client.on("data", (chunk) => {
      if (this.armed && chunk.includes(".txlog") && chunk.includes("COMMIT")) {
        const mode = this.armed;
        this.armed = undefined;
        if (mode === "request") return drop();
        held = Buffer.alloc(0);
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (!held) return client.write(chunk);
      held = Buffer.concat([held, chunk]);
      // The server has answered the COMMIT: it committed. The reply never reaches the driver.
      if (held.includes("COMMIT\0")) drop();
    });
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
  const proxy = await LossyProxy.start(server.host, server.port);
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
