import crypto from "node:crypto";
import { newerVersion, SCHEMA_VERSION, sleep, type WriteSet } from "@taskstore/core";
import type { Cluster, Redis } from "ioredis";
import { errors, replyOf } from "./redis-errors.js";
import type { StoreKeys } from "./redis-keys.js";
import type { RedisLock } from "./redis-lock.js";
import { COMMIT, SETTLE } from "./redis-scripts.js";

/** What `transact()` read of one task (`raw` null: absent), compared by the commit script. */
export interface ReadCheck {
  id: string;
  raw: string | null;
  sha: string;
  logCount: number;
  /** The store's version, when it was read in the same round trip. */
  version?: string;
}

/** What the COMMIT script answered: applied, a read changed, the store's lock is held elsewhere, or the id was settled before. */
export type CommitResult = "applied" | "conflict" | "locked" | "settled";

/** How many task heads one instance caches for `transact()`. */
export const HEAD_CACHE_LIMIT = 20_000;

/** How long a commit's marker (`{prefix}:tx:<id>`) lives. */
const MARKER_TTL_MS = 600_000;

/**
 * The commits of one driver instance. A write set goes out as one COMMIT script call that first
 * checks that every task it read (and the version) is still as read. Reads come from a cache of
 * task heads as this instance last saw them (an id never seen is guessed absent); the script
 * verifies those guesses like any read, so a stale cache only costs a retry with fresh reads, and
 * a write is one round trip. Each commit carries an id the script records, so one whose reply was
 * lost can be looked up (`settle`) instead of being applied twice.
 */
export class RedisCommits {
  /** Task heads as this instance last saw them. */
  private readonly heads = new Map<string, ReadCheck>();
  /** The store's version as last seen ("" for a store that records none), or undefined. */
  cachedVersion: string | undefined;

  constructor(
    private readonly client: Redis | Cluster,
    private readonly keys: StoreKeys,
    private readonly lock: RedisLock,
    /** This instance's id, published with each commit. */
    private readonly instance: string,
    /** The channel only this instance's subscriber listens on, or "" (see COMMIT). */
    private readonly ownChannel: string,
    private readonly confirmTimeoutMs: number,
  ) {}

  /** A task's stored JSON and log length: from the cache, or (when `fresh`) from Redis. */
  async readHead(id: string, fresh: boolean, withVersion: boolean): Promise<ReadCheck> {
    const cached = fresh ? undefined : this.heads.get(id);
    if (cached) return cached;
    if (!fresh) return { id, raw: null, sha: "", logCount: 0 }; // guessed absent; the commit checks it
    const { main } = this.keys;
    const multi = this.client.multi().get(main.task(id)).llen(main.log(id));
    if (withVersion) multi.hget(main.meta, "version");
    const replies = await errors.guard("read", async () => (await multi.exec()) ?? []);
    const raw = replyOf<string | null>(replies[0]);
    const check: ReadCheck = { id, raw, sha: raw === null ? "" : sha1(raw), logCount: replyOf<number>(replies[1]) };
    this.remember(check);
    if (withVersion) return { ...check, version: replyOf<string | null>(replies[2]) ?? "" };
    return check;
  }

  /** The stored version, read from Redis ("" when the store records none). */
  async readVersion(): Promise<string> {
    return (await errors.guard("read", () => this.client.hget(this.keys.main.meta, "version"))) ?? "";
  }

  /** Sends `writes` under the id `txId`, to be applied only if every check still holds. */
  async commit(writes: WriteSet, checks: Map<string, ReadCheck>, version: string, txId: string): Promise<CommitResult> {
    const { main } = this.keys;
    const keys = [this.keys.lock, this.keys.rev, main.meta, main.ids, main.seq, this.keys.tx(txId)];
    const args: (string | number)[] = [this.lock.value, this.instance, this.keys.channel, Date.now(), checks.size, version];
    const newVersion = writes.version ? newerVersion(version || SCHEMA_VERSION, writes.version) : version || SCHEMA_VERSION;
    args.push(newVersion, writes.puts.length, writes.logs.length, writes.deletes.length, MARKER_TTL_MS, this.ownChannel);
    for (const check of checks.values()) {
      keys.push(main.task(check.id), main.log(check.id));
      args.push(check.sha, check.logCount);
    }
    // What the heads will be once this commit is applied, to cache then.
    const after = new Map<string, ReadCheck>();
    for (const body of writes.puts) {
      const raw = JSON.stringify(body);
      keys.push(main.task(body.id));
      args.push(body.id, raw);
      after.set(body.id, { id: body.id, raw, sha: sha1(raw), logCount: checks.get(body.id)?.logCount ?? 0 });
    }
    for (const log of writes.logs) {
      keys.push(main.task(log.id), main.log(log.id));
      args.push(log.replace ? "1" : "0", log.keep, log.entries.length, ...log.entries.map((entry) => JSON.stringify(entry)));
      const head = after.get(log.id) ?? checks.get(log.id);
      if (head && head.raw !== null) {
        const count = (log.replace ? 0 : head.logCount) + log.entries.length;
        after.set(log.id, { id: head.id, raw: head.raw, sha: head.sha, logCount: Math.min(count, log.keep) });
      }
    }
    for (const id of writes.deletes) {
      keys.push(main.task(id), main.log(id));
      args.push(id);
      after.set(id, { id, raw: null, sha: "", logCount: 0 });
    }
    let result: unknown;
    try {
      result = await errors.guard("commit", () => COMMIT.run(this.client, keys, args));
    } catch (error) {
      this.forget(); // the commit may or may not have happened
      throw error;
    }
    if (result === 1) {
      for (const check of after.values()) this.remember(check);
      this.cachedVersion = newVersion;
      return "applied";
    }
    return result === 2 ? "settled" : result === -1 ? "locked" : "conflict";
  }

  /**
   * Learns whether the commit named `txId`, sent but unanswered, was applied: "1" it was, "void" it
   * was not and now never will be (SETTLE fences it). Asks until the server answers, up to
   * `confirmTimeoutMs` (the client reconnects meanwhile); undefined when it never did.
   */
  async settle(txId: string, patienceMs = this.confirmTimeoutMs): Promise<string | undefined> {
    const deadline = Date.now() + patienceMs;
    for (let round = 1; ; round++) {
      try {
        return String(await SETTLE.run(this.client, [this.keys.tx(txId)], [MARKER_TTL_MS]));
      } catch {
        if (Date.now() >= deadline) return undefined;
        await sleep(Math.min(25 * round, 250, Math.max(0, deadline - Date.now())));
      }
    }
  }

  /** Caches a head as read (by a load or a transaction). */
  remember(check: ReadCheck): void {
    // Bounded: past the cap, start over (reads then go to Redis until the cache fills again).
    if (this.heads.size >= HEAD_CACHE_LIMIT) this.heads.clear();
    this.heads.set(check.id, { id: check.id, raw: check.raw, sha: check.sha, logCount: check.logCount });
  }

  /** Drops the cache: after a write whose outcome is unknown, a save or a restore. */
  forget(): void {
    this.heads.clear();
    this.cachedVersion = undefined;
  }
}

/** crypto.hash (Node 20.12+) is a one-shot several times cheaper than a Hash object; it runs once per write. */
export const sha1: (text: string) => string =
  typeof crypto.hash === "function"
    ? (text) => crypto.hash("sha1", text, "hex")
    : (text) => crypto.createHash("sha1").update(text, "utf8").digest("hex");
