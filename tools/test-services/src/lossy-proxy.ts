import { connect, createServer, type Server, type Socket } from "node:net";

export interface LossyProxyOptions {
  /** The server the proxy forwards to. */
  host: string;
  port: number;
  /** True for the client bytes that carry a commit: the request an armed proxy cuts. */
  isCommit(chunk: Buffer): boolean;
  /** True once the server's reply bytes so far show the commit happened (default: any byte). */
  replyComplete?(reply: Buffer): boolean;
}

/**
 * A TCP proxy on loopback between a client and a server, for testing what a driver does when a
 * commit's outcome is unknown. Once `armed`, the first commit request is cut off: "reply"
 * forwards it, lets the server run it, then drops both connections before the reply gets back;
 * "request" drops them without forwarding it (the commit never runs). `cut` counts the drops.
 */
export class LossyProxy {
  armed: "reply" | "request" | undefined;
  cut = 0;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly listener: Server,
    private readonly options: LossyProxyOptions,
  ) {}

  static async start(options: LossyProxyOptions): Promise<LossyProxy> {
    const listener = createServer();
    const proxy = new LossyProxy(listener, options);
    listener.on("connection", (client) => proxy.pipe(client));
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  /** The loopback port the proxy listens on. */
  get port(): number {
    const address = this.listener.address();
    return typeof address === "object" && address ? address.port : 0;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.listener.close(resolve));
  }

  private pipe(client: Socket): void {
    const upstream = connect(this.options.port, this.options.host);
    this.sockets.add(client).add(upstream);
    const replyComplete = this.options.replyComplete ?? (() => true);
    let held: Buffer | undefined;
    const drop = () => {
      this.cut++;
      client.destroy();
      upstream.destroy();
    };
    client.on("data", (chunk: Buffer) => {
      if (this.armed && this.options.isCommit(chunk)) {
        const mode = this.armed;
        this.armed = undefined;
        if (mode === "request") return drop();
        held = Buffer.alloc(0);
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (!held) return client.write(chunk);
      held = Buffer.concat([held, chunk]);
      // The server has answered the commit: it ran. The reply never reaches the client.
      if (replyComplete(held)) drop();
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
