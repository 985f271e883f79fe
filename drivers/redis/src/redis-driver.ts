import { randomUUID } from "node:crypto";
import {
  DRIVER_SPECIFICATION_VERSION,
  type DriverCapabilities,
  type DriverContext,
  type DriverDescription,
  numberOption,
  type RestoreResult,
  resolveOption,
  SCHEMA_VERSION,
  type StorageData,
  type StorageDriver,
  type StoreReader,
  sleep,
  type TaskHead,
  type TransactOptions,
  type WriteSet,
} from "@taskstore/core";
import { Cluster, type ClusterNode, type Redis, type RedisOptions } from "ioredis";
import { addressesOf, createClient } from "./redis-client.js";
import { HEAD_CACHE_LIMIT, type ReadCheck, RedisCommits, sha1 } from "./redis-commit.js";
import { checkReplies, errors, parseObject, replyOf, unanswered } from "./redis-errors.js";
import { StoreKeys } from "./redis-keys.js";
import { RedisLock } from "./redis-lock.js";
import { COPY_SPACE, RESTORE } from "./redis-scripts.js";
import { decodeStore, saveMulti } from "./redis-store.js";
import { ChangeSubscriber } from "./redis-subscriber.js";

export interface RedisStorageDriverOptions {
  /** `redis://` or `rediss://` URL of a single server (credentials and TLS pass through to ioredis). */
  url?: string;
  /** Startup nodes of a Redis Cluster, as URLs or `{ host, port }`. */
  nodes?: (string | ClusterNode)[];
  /** Your own ioredis `Redis` or `Cluster`. The driver never closes it. */
  client?: Redis | Cluster;
  /** Names the store; every key is `{prefix}:...`. Letters, digits, `_ - . : /`. Default "taskstore". */
  prefix?: string;
  /** Extra ioredis options for a client the driver makes (ignored with `client`). */
  redisOptions?: RedisOptions;
  /** A command without a reply in this time fails (the server is hung or unreachable). Default 5,000 ms. */
  commandTimeoutMs?: number;
  /**
   * How long the store lock (`acquireLock()`) of a holder that vanished blocks others: its ttl,
   * renewed every third of this while held. Default 10,000 ms.
   */
  lockExpiryMs?: number;
  /** @deprecated Use `lockExpiryMs` (the same value); accepted until the next minor version. */
  lockTtlMs?: number;
  /** How long `acquireLock()`, and a transaction meeting a held lock, wait. Default 30,000 ms. */
  lockTimeoutMs?: number;
  /**
   * How many times a transaction whose reads changed underneath is run again before
   * `ConflictError` (retries: the first run is not counted). Default 49 (50 runs in all).
   */
  maxConflictRetries?: number;
  /**
   * @deprecated Use `maxConflictRetries`, which counts retries: `maxAttempts: n` is
   * `maxConflictRetries: n - 1`. Accepted until the next minor version.
   */
  maxAttempts?: number;
  /**
   * How long a transaction whose commit was sent but got no reply (connection lost, timeout) waits
   * for the server, to learn whether the commit was applied, before it throws. Default
   * `commandTimeoutMs`.
   */
  confirmTimeoutMs?: number;
}

/**
 * A taskstore store in Redis: one JSON string per task, its log as a list, an index of ids (a
 * sorted set in creation order) and a meta hash, all under the hash tag `{prefix}` so a store
 * lives in one slot of a Redis Cluster. Change sets are applied by one Lua script that first
 * checks that everything the change read is unchanged (optimistic concurrency, retried).
 */
export class RedisStorageDriver implements StorageDriver {
  readonly name = "redis";
  /** The contract this driver was written against. */
  readonly specificationVersion = DRIVER_SPECIFICATION_VERSION;
  readonly capabilities: Partial<DriverCapabilities> = {
    locking: true,
    incremental: true,
    backup: true,
    restore: true,
    persistent: true,
    changeNotification: true,
  };
  private readonly client: Redis | Cluster;
  private readonly ownsClient: boolean;
  private readonly keys: StoreKeys;
  private readonly lock: RedisLock;
  private readonly commits: RedisCommits;
  /** Commits whose outcome stayed unknown, by core's commit id (see `transact`). */
  private readonly unsettled = new Map<string, string>();
  private readonly subscriber: ChangeSubscriber;
  private readonly instance = randomUUID();
  private readonly lockTimeoutMs: number;
  private readonly maxConflictRetries: number;
  private readonly commandTimeoutMs: number;
  private context: DriverContext | undefined;

  constructor(options: RedisStorageDriverOptions = {}) {
    this.keys = new StoreKeys(options.prefix ?? "taskstore");
    const { name } = this;
    this.commandTimeoutMs = numberOption(options.commandTimeoutMs, "commandTimeoutMs", name, 5_000, { min: 1 });
    this.lockTimeoutMs = numberOption(options.lockTimeoutMs, "lockTimeoutMs", name, 30_000);
    const lockExpiryMs = resolveOption(options, "lockExpiryMs", "lockTtlMs", name);
    // PX takes whole milliseconds, at least 1.
    const expiry = numberOption(lockExpiryMs, "lockExpiryMs", name, 10_000, { min: 1, integer: true });
    const retries = resolveOption(options, "maxConflictRetries", { name: "maxAttempts", toCanonical: (attempts) => attempts - 1 }, name);
    this.maxConflictRetries = numberOption(retries, "maxConflictRetries", name, 49, { integer: true });
    const confirmTimeoutMs = numberOption(options.confirmTimeoutMs, "confirmTimeoutMs", name, this.commandTimeoutMs);
    const { client, owned } = createClient({ ...options, commandTimeoutMs: this.commandTimeoutMs });
    this.client = client;
    this.ownsClient = owned;
    const warn = (error: Error) => this.context?.warn(error);
    this.lock = new RedisLock(() => this.client, this.keys.lock, expiry, this.lockTimeoutMs, warn);
    // A channel only this instance's subscriber listens on, so the commit script can tell whether
    // anyone else listens on the store's channel (see COMMIT); "" on a cluster, where it cannot.
    const ownChannel = this.client instanceof Cluster ? "" : `${this.keys.channel}:${this.instance}`;
    this.commits = new RedisCommits(this.client, this.keys, this.lock, this.instance, ownChannel, confirmTimeoutMs);
    this.subscriber = new ChangeSubscriber(this.client, { store: this.keys.channel, own: ownChannel }, this.instance, warn);
  }

  attach(context: DriverContext): void {
    this.context = context;
  }

  async initialize(): Promise<void> {
    if (this.client.status === "wait") await errors.guard("connect", () => this.client.connect());
  }

  async loadData(): Promise<StorageData> {
    // A load after watch() starts once the subscription is in place (or a command timeout has
    // passed: the server may be down): every commit after it is announced to this instance,
    // every one before it is in what the load reads.
    await this.subscriber.ready(this.commandTimeoutMs);
    return errors.guard("load", async () => {
      const { main } = this.keys;
      for (let attempt = 0; attempt < 100; attempt++) {
        // First the ids, then everything in one MULTI (atomic); if a commit came in between, the
        // id list may be stale, so look again.
        const [rev, ids] = (await this.client.multi().get(this.keys.rev).zrange(main.ids, 0, -1).exec()) ?? [];
        const idList = replyOf<string[]>(ids);
        const multi = this.client.multi().get(this.keys.rev).hgetall(main.meta);
        for (const id of idList) multi.get(main.task(id)).lrange(main.log(id), 0, -1);
        const replies = (await multi.exec()) ?? [];
        if (replyOf(replies[0]) !== replyOf(rev)) continue;
        const meta = replyOf<Record<string, string>>(replies[1]);
        const data = decodeStore(meta, idList, replies.slice(2), (id, raw, logCount, i) => {
          if (i < HEAD_CACHE_LIMIT) this.commits.remember({ id, raw, sha: sha1(raw), logCount });
        });
        this.commits.cachedVersion = meta.version ?? "";
        return data;
      }
      throw errors.unavailable("the store kept changing while it was loaded (100 attempts)");
    });
  }

  async saveData(data: StorageData): Promise<void> {
    const multi = saveMulti(this.client, this.keys, data, this.instance);
    this.commits.forget();
    await errors.guard("save", async () => checkReplies(await multi.exec()));
  }

  /**
   * Runs `work` and commits its writes (see `RedisCommits`): reads come from the head cache first,
   * and a commit refused because a read changed runs `work` again on fresh reads.
   */
  async transact(work: (reader: StoreReader) => Promise<WriteSet>, options: TransactOptions = {}): Promise<void> {
    const lockDeadline = Date.now() + this.lockTimeoutMs;
    // A commit of this batch (core's commitId, the same on each retry) whose outcome stayed
    // unknown when the server went away: settled first, so a batch that landed is not applied again.
    const earlier = options.commitId === undefined ? undefined : this.unsettled.get(options.commitId);
    if (earlier !== undefined && options.commitId !== undefined) {
      // One try: while the server stays away this fails at once, as any write would.
      const state = await this.commits.settle(earlier, 0);
      if (state === undefined)
        throw errors.unavailable("transact: a commit whose reply was lost cannot be settled yet (the server is away)");
      this.unsettled.delete(options.commitId);
      if (state === "1") return;
    }
    // Only commits refused because a read changed count towards maxConflictRetries; rounds spent
    // waiting for another instance's store lock are bounded by lockTimeoutMs instead.
    let conflicts = 0;
    // Names this call's commit, so one whose reply was lost is looked up instead of applied twice.
    // A new id only once the old one is settled as void.
    let txId = randomUUID();
    for (let attempt = 1; ; attempt++) {
      const fresh = attempt > 1;
      const checks = new Map<string, ReadCheck>();
      let version = fresh ? undefined : this.commits.cachedVersion;
      const reader: StoreReader = {
        get: async (id) => {
          const check = checks.get(id) ?? (await this.commits.readHead(id, fresh, version === undefined));
          checks.set(id, check);
          if (check.version !== undefined) version ??= check.version;
          if (check.raw === null) return undefined;
          // Assigned, not spread in: `{ ...parsed, logCount }` is a slow path in V8 (see core's copy.ts).
          const head = parseObject(check.raw, `task ${id}`) as TaskHead;
          head.logCount = check.logCount;
          return head;
        },
        version: async () => {
          version ??= await this.commits.readVersion();
          return version || SCHEMA_VERSION;
        },
      };
      let writes: WriteSet;
      try {
        writes = await work(reader);
      } catch (error) {
        // A logical error seen through the cache may come from a stale entry: look again, fresh.
        if (!fresh) continue;
        throw error;
      }
      if (version === undefined) await reader.version();
      let result: Awaited<ReturnType<RedisCommits["commit"]>>;
      try {
        result = await this.commits.commit(writes, checks, version ?? "", txId);
      } catch (error) {
        if (!unanswered(error)) throw error;
        const state = await this.commits.settle(txId);
        if (state === "1") return; // it was applied; only its reply was lost
        if (state === undefined) {
          // The server stayed away: the outcome is unknown until the retry settles it.
          if (options.commitId !== undefined) {
            this.unsettled.set(options.commitId, txId);
            // Bounded: a batch core gave up on is never retried.
            if (this.unsettled.size > 64) this.unsettled.delete(this.unsettled.keys().next().value as string);
          }
          throw error;
        }
        txId = randomUUID(); // it never ran, and now never will: run the change again
        continue;
      }
      if (result === "applied") return;
      if (result === "settled") {
        txId = randomUUID();
        continue;
      }
      if (result === "locked" && Date.now() >= lockDeadline) {
        const holder = await this.lock.holder().catch(() => null);
        throw errors.lockTimeout(
          `a transaction waited ${this.lockTimeoutMs} ms for the store lock (held by pid ${holder?.pid} on ${holder?.host})`,
        );
      }
      if (result === "conflict" && ++conflicts > this.maxConflictRetries) {
        throw errors.conflict(`the store kept changing under a transaction (${conflicts} conflicting commits)`);
      }
      // Jittered backoff, so competing writers do not retry in lockstep (none before the first
      // fresh attempt: a stale cache is not contention).
      if (attempt > 1) await sleep(Math.min(2 ** Math.min(attempt, 7), 100) * Math.random());
    }
  }

  async backup(): Promise<void> {
    const { main, backup } = this.keys;
    await errors.guard("backup", () =>
      COPY_SPACE.run(
        this.client,
        [main.meta, main.ids, main.seq, backup.meta, backup.ids, backup.seq, this.keys.backupAt],
        [main.base, backup.base, Date.now(), SCHEMA_VERSION],
      ),
    );
  }

  async restore(): Promise<RestoreResult> {
    const { main, backup } = this.keys;
    this.commits.forget();
    const stamp = `${new Date().toISOString().replace(/[-:.]/g, "")}-${randomUUID().slice(0, 8)}`;
    const aside = this.keys.aside(stamp);
    const result = await errors.guard("restore", () =>
      RESTORE.run(
        this.client,
        [main.meta, main.ids, main.seq, backup.meta, backup.ids, backup.seq, aside.meta, aside.ids, aside.seq, this.keys.rev],
        [main.base, backup.base, aside.base, this.keys.channel, this.instance],
      ),
    );
    if (result === 0) throw errors.corrupt(`the store ${this.keys.tag} has no backup to restore`);
    return {
      ...(result === 2 ? { movedTo: `redis:${aside.base}*` } : {}),
      restoredFrom: `redis:${backup.base}*`,
    };
  }

  async acquireLock(): Promise<void> {
    await errors.guard("acquireLock", () => this.lock.acquire());
  }

  async releaseLock(): Promise<void> {
    await errors.guard("releaseLock", () => this.lock.release());
  }

  watch(listener: () => void): () => void {
    return this.subscriber.add(listener);
  }

  async describe(): Promise<DriverDescription> {
    return errors.guard("describe", async () => {
      const [backupAt, holder] = await Promise.all([this.client.get(this.keys.backupAt), this.lock.holder()]);
      return {
        driver: this.name,
        location: `redis://${addressesOf(this.client).join(",")} ${this.keys.tag}`,
        ...(backupAt ? { lastBackupAt: Number(backupAt) } : {}),
        lockHolder: holder ? { pid: holder.pid, host: holder.host, since: holder.since } : null,
      };
    });
  }

  async close(): Promise<void> {
    this.lock.stopRenewing();
    await this.lock.release().catch(() => undefined);
    this.subscriber.close();
    if (this.ownsClient) await this.client.quit().catch(() => this.client.disconnect());
  }
}
