import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { sleep } from "@taskstore/core";
import { errors } from "./s3-errors.js";
import type { S3Io } from "./s3-io.js";

export const LOCK_KEY = "lock.json";

export interface LeaseBody {
  owner: string;
  pid: number;
  host: string;
  since: number;
  /** Holder's clock, epoch ms. Another instance may take the lease over after it. */
  expiresAt: number;
  released?: boolean;
}

/**
 * The store lock (`acquireLock()`/`releaseLock()`) as a lease object. Taken by creating
 * `lock.json` with `If-None-Match: *`, or by replacing it with `If-Match` when it is released or
 * expired; renewed with `If-Match` every third of the lease while held; released by its holder
 * only, with an `If-Match` overwrite that marks it released (S3 servers such as Ceph RGW ignore
 * `If-Match` on DELETE, so a delete could remove another holder's lease).
 */
export class S3Lease {
  private readonly owner = randomUUID();
  private etag: string | undefined;
  private body: LeaseBody | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The renewal in flight, if any. */
  private renewing: Promise<void> | undefined;
  private releasing = false;

  constructor(
    private readonly io: S3Io,
    private readonly leaseMs: number,
    private readonly timeoutMs: number,
    private readonly warn: (error: Error) => void,
  ) {}

  get held(): boolean {
    return this.etag !== undefined;
  }

  async acquire(): Promise<void> {
    if (this.held) return;
    const deadline = Date.now() + this.timeoutMs;
    let wait = 25;
    for (;;) {
      const now = Date.now();
      const body: LeaseBody = { owner: this.owner, pid: process.pid, host: hostname(), since: now, expiresAt: now + this.leaseMs };
      const text = JSON.stringify(body);
      let etag = await this.io.putIfAbsent(LOCK_KEY, text);
      if (etag === undefined) {
        const current = await this.io.get(LOCK_KEY);
        const lease = current ? parseLease(current.body) : undefined;
        if (current && lease?.owner === this.owner && !lease.released) {
          // Our own create, retried by the SDK after a lost response.
          etag = current.etag;
          body.since = lease.since;
          body.expiresAt = lease.expiresAt;
        } else if (current && (!lease || lease.released || lease.expiresAt < Date.now())) {
          etag = await this.io.putIfMatch(LOCK_KEY, text, current.etag);
          if (etag === undefined) etag = await this.ownedAfterAmbiguousWrite(body);
        }
      }
      if (etag !== undefined) {
        this.etag = etag;
        this.body = body;
        this.scheduleRenewal();
        return;
      }
      if (Date.now() >= deadline) {
        throw errors.lockTimeout(
          `the lock s3://${this.io.bucket}/${this.io.prefix}${LOCK_KEY} was not released within ${this.timeoutMs} ms`,
        );
      }
      await sleep(Math.min(wait * (0.5 + Math.random()), Math.max(0, deadline - Date.now())));
      wait = Math.min(wait * 2, 500);
    }
  }

  async release(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    // A renewal in flight replaces the lease's etag: releasing with the old one would fail its
    // If-Match and leave the renewed lease standing for leaseMs. Wait for it, then use its etag.
    this.releasing = true;
    try {
      await this.renewing;
    } finally {
      this.releasing = false;
    }
    const etag = this.etag;
    const body = this.body;
    this.etag = undefined;
    this.body = undefined;
    if (etag === undefined || body === undefined) return;
    // A mismatch means the lease expired and someone else holds it now: nothing of ours to release.
    await this.io.putIfMatch(LOCK_KEY, JSON.stringify({ ...body, released: true, expiresAt: 0 }), etag);
  }

  /**
   * Waits while another instance holds an unreleased, unexpired lease (returns at once when this
   * instance holds it), up to the lock timeout: then `LockTimeoutError`. Change sets call it before
   * each commit, so they wait for a holder's lock -> load -> save -> unlock.
   */
  async waitUntilFree(): Promise<void> {
    if (this.held) return;
    const deadline = Date.now() + this.timeoutMs;
    let wait = 25;
    while ((await this.holder()) !== undefined) {
      if (this.held) return;
      if (Date.now() >= deadline) {
        throw errors.lockTimeout(
          `the lock s3://${this.io.bucket}/${this.io.prefix}${LOCK_KEY} was not released within ${this.timeoutMs} ms`,
        );
      }
      await sleep(Math.min(wait * (0.5 + Math.random()), Math.max(0, deadline - Date.now())));
      wait = Math.min(wait * 2, 500);
    }
  }

  /** The current holder, for `describe()`: undefined when free. */
  async holder(): Promise<LeaseBody | undefined> {
    const current = await this.io.get(LOCK_KEY);
    const lease = current ? parseLease(current.body) : undefined;
    if (!lease || lease.released || lease.expiresAt < Date.now()) return undefined;
    return lease;
  }

  private scheduleRenewal(): void {
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.renewing = this.renew().finally(() => {
          this.renewing = undefined;
        });
      },
      Math.max(50, this.leaseMs / 3),
    );
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    const etag = this.etag;
    const body = this.body;
    if (etag === undefined || body === undefined) return;
    const next = { ...body, expiresAt: Date.now() + this.leaseMs };
    try {
      let renewed = await this.io.putIfMatch(LOCK_KEY, JSON.stringify(next), etag);
      if (renewed === undefined) renewed = await this.ownedAfterAmbiguousWrite(next);
      if (this.etag !== etag) return; // released meanwhile
      if (renewed === undefined) {
        this.etag = undefined;
        this.body = undefined;
        this.warn(errors.unavailable("the lock lease was lost (another instance took it over after it expired)"));
        return;
      }
      this.etag = renewed;
      this.body = next;
    } catch (error) {
      this.warn(error as Error);
    }
    if (this.etag !== undefined && !this.releasing) this.scheduleRenewal();
  }

  /** After a 412 on our own write: was it in fact applied (the SDK retried after a lost response)? */
  private async ownedAfterAmbiguousWrite(body: LeaseBody): Promise<string | undefined> {
    const current = await this.io.get(LOCK_KEY);
    const lease = current ? parseLease(current.body) : undefined;
    if (current && lease?.owner === body.owner && lease.expiresAt === body.expiresAt && !lease.released) return current.etag;
    return undefined;
  }
}

function parseLease(text: string): LeaseBody | undefined {
  try {
    const value = JSON.parse(text) as LeaseBody;
    return typeof value === "object" && value !== null && typeof value.owner === "string" ? value : undefined;
  } catch {
    return undefined;
  }
}
