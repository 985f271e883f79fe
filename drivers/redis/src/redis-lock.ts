import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { sleep } from "@taskstore/core";
import type { Cluster, Redis } from "ioredis";
import { errors } from "./redis-errors.js";
import { RELEASE_LOCK, RENEW_LOCK } from "./redis-scripts.js";

export interface LockHolder {
  token: string;
  pid: number;
  host: string;
  since: number;
}

/**
 * The store lock (`acquireLock()`/`releaseLock()`): `SET key value NX PX ttl`, where the value
 * names the holder with a random token. It is renewed every third of its ttl while held, and
 * released by a compare-and-delete script so only its holder can release it. A holder that dies
 * stops renewing and its lock expires after `ttl`.
 */
export class RedisLock {
  /** The exact value this instance wrote, while it holds the lock. */
  private held: string | undefined;
  private renewTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: () => Redis | Cluster,
    private readonly key: string,
    private readonly ttlMs: number,
    private readonly timeoutMs: number,
    private readonly onLost: (error: Error) => void,
  ) {}

  /** The value this instance holds the lock with, or "" (what the commit script compares). */
  get value(): string {
    return this.held ?? "";
  }

  async acquire(): Promise<void> {
    if (this.held) return;
    const holder: LockHolder = { token: randomUUID(), pid: process.pid, host: hostname(), since: Date.now() };
    const value = JSON.stringify(holder);
    const deadline = Date.now() + this.timeoutMs;
    let delay = 10;
    for (;;) {
      const ok = await this.client().set(this.key, value, "PX", this.ttlMs, "NX");
      if (ok === "OK") break;
      if (Date.now() >= deadline) {
        throw errors.lockTimeout(
          `the lock ${this.key} was not released within ${this.timeoutMs} ms (held by ${await this.describeHolder()})`,
        );
      }
      await sleep(Math.min(delay, Math.max(0, deadline - Date.now())) * (0.5 + Math.random()));
      delay = Math.min(delay * 2, 200);
    }
    this.held = value;
    this.renewTimer = setInterval(() => void this.renew(value), Math.max(1, Math.floor(this.ttlMs / 3)));
    this.renewTimer.unref();
  }

  async release(): Promise<void> {
    const value = this.held;
    if (!value) return;
    this.stopRenewing();
    this.held = undefined;
    await RELEASE_LOCK.run(this.client(), [this.key], [value]);
  }

  /** Who holds the lock now, from the stored value; null when nobody does. */
  async holder(): Promise<LockHolder | null> {
    const raw = await this.client().get(this.key);
    if (raw === null) return null;
    try {
      return JSON.parse(raw) as LockHolder;
    } catch {
      return { token: raw, pid: 0, host: "unknown", since: 0 };
    }
  }

  stopRenewing(): void {
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = undefined;
  }

  private async renew(value: string): Promise<void> {
    try {
      const renewed = await RENEW_LOCK.run(this.client(), [this.key], [value, this.ttlMs]);
      if (renewed === 1 || this.held !== value) return;
      // Expired (a long pause, a server restart without persistence) and maybe taken by another.
      this.stopRenewing();
      this.held = undefined;
      this.onLost(errors.lockTimeout(`the lock ${this.key} expired while held; another instance may have taken it`));
    } catch (error) {
      // The server is unreachable: the next renewal tries again; the ttl bounds the damage.
      this.onLost(errors.unavailable(`renewing the lock ${this.key} failed: ${(error as Error).message}`, error));
    }
  }

  private async describeHolder(): Promise<string> {
    const holder = await this.holder().catch(() => null);
    return holder
      ? `pid ${holder.pid} on ${holder.host} since ${new Date(holder.since).toISOString()}`
      : "an instance that has released it since";
  }
}
