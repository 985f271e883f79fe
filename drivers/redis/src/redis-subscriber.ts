import type { Cluster, Redis } from "ioredis";
import { subscriberFor } from "./redis-client.js";

/**
 * `watch()`'s side: one SUBSCRIBE connection per driver instance, opened for the first listener
 * and closed after the last. Every commit publishes the committing instance's id on the store's
 * channel; listeners hear the commits of other instances only.
 */
export class ChangeSubscriber {
  private readonly listeners = new Set<() => void>();
  private subscriber: Redis | Cluster | undefined;
  /** Settles once SUBSCRIBE was answered (or failed). */
  private subscribed: Promise<void> | undefined;

  constructor(
    private readonly client: Redis | Cluster,
    /** The store's channel, and (unless "") one only this instance listens on (see COMMIT in redis-scripts.ts). */
    private readonly channels: { store: string; own: string },
    /** This instance's id: messages carrying it are its own commits. */
    private readonly instance: string,
    private readonly warn: (error: Error) => void,
  ) {}

  /** Adds a listener; returns its unsubscribe function. */
  add(listener: () => void): () => void {
    this.listeners.add(listener);
    if (!this.subscriber) this.start();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stop();
    };
  }

  /**
   * Resolves once the subscription is in place, or after `ms` (the server may be down): a load
   * after that sees every commit before it, and hears of every one after it.
   */
  async ready(ms: number): Promise<void> {
    if (!this.subscribed) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.subscribed, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
  }

  /** Drops every listener and the connection. */
  close(): void {
    this.listeners.clear();
    this.stop();
  }

  private start(): void {
    const subscriber = subscriberFor(this.client);
    subscriber.on("message", (_channel: string, from: string) => {
      if (from === this.instance) return;
      for (const each of this.listeners) each();
    });
    // Also on a channel of its own, which nobody publishes to: the commit script compares the two
    // counts to learn whether anyone but this instance listens (see COMMIT).
    const channels = this.channels.own ? [this.channels.store, this.channels.own] : [this.channels.store];
    this.subscribed = subscriber.subscribe(...channels).then(
      () => undefined,
      (error: Error) => this.warn(error),
    );
    this.subscriber = subscriber;
  }

  private stop(): void {
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    this.subscribed = undefined;
    // disconnect(), not quit(): quit() queues behind a pending SUBSCRIBE while offline and can
    // keep reconnecting, and the process alive, after close().
    subscriber?.disconnect();
  }
}
