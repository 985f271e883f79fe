import type { Notification, Pool, PoolClient } from "pg";
import { errors } from "./postgres-errors.js";

/**
 * LISTENs on the store's channel on a connection of its own and calls `onChange` for every
 * notification another driver instance sent. The connection is re-made with backoff when it is
 * lost (a server restart); after each reconnection `onChange` is called once, because changes
 * made while it was away were not heard.
 */
export class Notifier {
  private client: PoolClient | undefined;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private delay = 100;
  private connected = false;

  constructor(
    private readonly pool: Pool,
    /** The channel, quoted as an identifier for LISTEN. */
    private readonly channel: string,
    /** This instance's id: notifications carrying it are our own writes. */
    private readonly self: string,
    private readonly onChange: () => void,
    private readonly warn: (error: Error) => void,
  ) {}

  /** Resolves once the first LISTEN is live, or once its first attempt failed (it retries in the background). */
  start(): Promise<void> {
    if (this.running) return this.started;
    this.running = true;
    this.started = this.connect(false);
    return this.started;
  }

  private started: Promise<void> = Promise.resolve();

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    client.removeAllListeners("notification");
    client.removeAllListeners("error");
    client.on("error", () => undefined);
    try {
      await client.query(`UNLISTEN ${this.channel}`);
      client.release();
    } catch {
      client.release(true);
    }
  }

  private async connect(reconnecting: boolean): Promise<void> {
    let client: PoolClient | undefined;
    try {
      client = await this.pool.connect();
      client.on("error", (error) => this.lost(client as PoolClient, error));
      client.on("notification", (message: Notification) => {
        if (message.payload !== this.self) this.onChange();
      });
      await client.query(`LISTEN ${this.channel}`);
    } catch (error) {
      client?.release(true);
      if (this.running) this.retry(error);
      return;
    }
    if (!this.running) {
      client.release(true);
      return;
    }
    this.client = client;
    this.connected = true;
    this.delay = 100;
    if (reconnecting) this.onChange();
  }

  private lost(client: PoolClient, error: Error): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.removeAllListeners("notification");
    client.release(true);
    if (this.running) this.retry(error);
  }

  private retry(error: unknown): void {
    if (this.connected) {
      this.connected = false;
      this.warn(errors.unavailable("the change-notification connection was lost; reconnecting", error));
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.connect(true);
    }, this.delay);
    this.timer.unref();
    this.delay = Math.min(this.delay * 2, 5_000);
  }
}
