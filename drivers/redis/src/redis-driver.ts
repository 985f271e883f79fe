import crypto, { randomUUID } from "node:crypto";
import {
  ConflictError,
  CorruptDataError,
  DRIVER_SPECIFICATION_VERSION,
  type DriverCapabilities,
  type DriverContext,
  type DriverDescription,
  LockTimeoutError,
  type LogEntry,
  type RestoreResult,
  SCHEMA_VERSION,
  type StorageData,
  type StorageDriver,
  StorageUnavailableError,
  type StoredTask,
  type StoreReader,
  type TaskHead,
  TaskStoreError,
  type WriteSet,
} from "@taskstore/core";
import { Cluster, type ClusterNode, Redis, type RedisOptions, ReplyError } from "ioredis";
import { StoreKeys } from "./keys.js";
import { RedisLock, sleep } from "./redis-lock.js";
import { CLEAR, COMMIT, COPY_SPACE, RESTORE, SETTLE } from "./scripts.js";

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
  /** How long the seed's lock lives without renewal (it is renewed every third of this). Default 10,000 ms. */
  lockTtlMs?: number;
  /** How long `acquireLock()`, and a transaction meeting a held lock, wait. Default 30,000 ms. */
  lockTimeoutMs?: number;
  /** Attempts of a transaction whose reads keep changing underneath before `ConflictError`. Default 50. */
  maxAttempts?: number;
  /**
   * How long a transaction whose commit was sent but got no reply (connection lost, timeout) waits
   * for the server, to learn whether the commit was applied, before it throws. Default
   * `commandTimeoutMs`.
   */
  confirmTimeoutMs?: number;
}

/** What `transact()` read of one task (`raw` null: absent), compared by the commit script. */
interface ReadCheck {
  id: string;
  raw: string | null;
  sha: string;
  logCount: number;
  /** The store's version, when it was read in the same round trip. */
  version?: string;
}

/** How many task heads one instance caches for `transact()`. */
const HEAD_CACHE_LIMIT = 20_000;

/** How long a commit's marker (`{prefix}:tx:<id>`) lives. */
const MARKER_TTL_MS = 600_000;

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
  private readonly instance = randomUUID();
  private readonly lockTimeoutMs: number;
  private readonly maxAttempts: number;
  private readonly confirmTimeoutMs: number;
  private readonly commandTimeoutMs: number;
  private context: DriverContext | undefined;
  private subscriber: Redis | Cluster | undefined;
  /** Settles once the subscriber's SUBSCRIBE was answered (or failed). */
  private subscribed: Promise<void> | undefined;
  private readonly listeners = new Set<() => void>();
  /** Task heads as this instance last saw them, to read from in `transact()` (verified at commit). */
  private readonly heads = new Map<string, ReadCheck>();
  private cachedVersion: string | undefined;

  /**
   * A channel only this instance's subscriber listens on, so the commit script can tell whether
   * anyone else listens on the store's channel (see COMMIT); "" on a cluster, where it cannot.
   */
  private get ownChannel(): string {
    return this.client instanceof Cluster ? "" : `${this.keys.channel}:${this.instance}`;
  }

  constructor(options: RedisStorageDriverOptions = {}) {
    this.keys = new StoreKeys(options.prefix ?? "taskstore");
    const timeout = options.commandTimeoutMs ?? 5_000;
    this.commandTimeoutMs = timeout;
    // Fail fast while the server is away (no offline queue, no resending of commands in flight),
    // so the repository degrades to memory and retries, instead of commands hanging.
    const failFast: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      connectTimeout: timeout,
      commandTimeout: timeout,
      retryStrategy: (times) => Math.min(50 * times, 1_000),
    };
    if (options.client) {
      this.client = options.client;
      this.ownsClient = false;
    } else if (options.nodes) {
      this.client = new Cluster(options.nodes as ClusterNode[], {
        lazyConnect: true,
        enableOfflineQueue: false,
        clusterRetryStrategy: (times) => Math.min(100 * times, 1_000),
        // Not lazyConnect: the cluster manages its node connections (forcing it either way made
        // connect() hang now and then).
        redisOptions: { ...withoutLazyConnect(failFast), ...options.redisOptions },
      });
      this.ownsClient = true;
    } else if (options.url) {
      this.client = new Redis(options.url, { ...failFast, ...options.redisOptions });
      this.ownsClient = true;
    } else {
      throw new StorageUnavailableError("redis: give the driver a `url`, cluster `nodes` or a `client`");
    }
    // ioredis reports connection trouble as "error" events; without a listener Node would crash.
    if (this.ownsClient) this.client.on("error", () => undefined);
    this.lockTimeoutMs = options.lockTimeoutMs ?? 30_000;
    this.maxAttempts = options.maxAttempts ?? 50;
    this.confirmTimeoutMs = options.confirmTimeoutMs ?? timeout;
    this.lock = new RedisLock(
      () => this.client,
      this.keys.lock,
      options.lockTtlMs ?? 10_000,
      this.lockTimeoutMs,
      (error) => this.context?.warn(error),
    );
  }

  attach(context: DriverContext): void {
    this.context = context;
  }

  async initialize(): Promise<void> {
    if (this.client.status === "wait") await this.guard("connect", () => this.client.connect());
  }

  async loadData(): Promise<StorageData> {
    // A load after watch() starts once the subscription is in place (or a command timeout has
    // passed: the server may be down): every commit after it is announced to this instance,
    // every one before it is in what the load reads.
    if (this.subscribed) await within(this.subscribed, this.commandTimeoutMs);
    return this.guard("load", async () => {
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
        return this.decode(replyOf<Record<string, string>>(replies[1]), idList, replies.slice(2));
      }
      throw new StorageUnavailableError("redis: the store kept changing while it was loaded (100 attempts)");
    });
  }

  async saveData(data: StorageData): Promise<void> {
    const { main } = this.keys;
    const { version, tasks, metadata, ...extra } = data;
    const { lastUpdated, totalTasks: _n, ...metaExtra } = metadata;
    const multi = this.client.multi();
    multi.call("EVAL", CLEAR.source, 3, main.meta, main.ids, main.seq, main.base);
    multi.hset(main.meta, {
      version,
      lastUpdated: String(lastUpdated),
      extra: JSON.stringify(extra),
      metaExtra: JSON.stringify(metaExtra),
    });
    tasks.forEach((task, i) => {
      const { logs, ...body } = task;
      multi.set(main.task(task.id), JSON.stringify(body)).zadd(main.ids, i + 1, task.id);
      for (let at = 0; at < logs.length; at += 1_000) {
        multi.rpush(main.log(task.id), ...logs.slice(at, at + 1_000).map((entry) => JSON.stringify(entry)));
      }
    });
    multi.set(main.seq, tasks.length).incr(this.keys.rev).publish(this.keys.channel, this.instance);
    this.forget();
    await this.guard("save", async () => checkReplies(await multi.exec()));
  }

  /**
   * Runs `work` and commits its writes with one script that first checks that every task it read
   * (and the version) is still as read. Reads come from a cache of what this instance last saw
   * (an id never seen is guessed absent); the script verifies those guesses like any read, so a
   * stale cache only costs a retry with fresh reads. That makes a write one round trip.
   */
  transact = async (work: (reader: StoreReader) => Promise<WriteSet>): Promise<void> => {
    const lockDeadline = Date.now() + this.lockTimeoutMs;
    // Only commits refused because a read changed count towards maxAttempts; rounds spent
    // waiting for another instance's store lock are bounded by lockTimeoutMs instead.
    let conflicts = 0;
    // Names this call's commit: the script records it, so a commit whose reply was lost can be
    // looked up instead of being applied twice. A new id only once the old one is settled as void.
    let txId = randomUUID();
    for (let attempt = 1; ; attempt++) {
      const fresh = attempt > 1;
      const checks = new Map<string, ReadCheck>();
      let version = fresh ? undefined : this.cachedVersion;
      const reader: StoreReader = {
        get: async (id) => {
          const check = checks.get(id) ?? (await this.readHead(id, fresh, version === undefined));
          checks.set(id, check);
          if (check.version !== undefined) version ??= check.version;
          if (check.raw === null) return undefined;
          // Assigned, not spread in: `{ ...parsed, logCount }` is a slow path in V8 (see core's copy.ts).
          const head = parseJson(check.raw, `task ${id}`) as TaskHead;
          head.logCount = check.logCount;
          return head;
        },
        version: async () => {
          version ??= (await this.guard("read", () => this.client.hget(this.keys.main.meta, "version"))) ?? "";
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
      let result: unknown;
      try {
        result = await this.guard("commit", () => this.commit(writes, checks, version ?? "", txId));
      } catch (error) {
        this.forget(); // the commit may or may not have happened
        if (!unanswered(error)) throw error;
        const state = await this.settle(txId);
        if (state === "1") return; // it was applied; only its reply was lost
        if (state === undefined) throw error; // the server stayed away: the outcome is unknown
        txId = randomUUID(); // it never ran, and now never will: run the change again
        continue;
      }
      if (result === 1) return;
      if (result === 2) {
        txId = randomUUID();
        continue;
      }
      if (result === -1 && Date.now() >= lockDeadline) {
        const holder = await this.lock.holder().catch(() => null);
        throw new LockTimeoutError(
          `redis: a transaction waited ${this.lockTimeoutMs} ms for the store lock (held by pid ${holder?.pid} on ${holder?.host})`,
        );
      }
      if (result === 0 && ++conflicts >= this.maxAttempts) {
        throw new ConflictError(`redis: the store kept changing under a transaction (${conflicts} attempts)`);
      }
      // Jittered backoff, so competing writers do not retry in lockstep (none before the first
      // fresh attempt: a stale cache is not contention).
      if (attempt > 1) await sleep(Math.min(2 ** Math.min(attempt, 7), 100) * Math.random());
    }
  };

  async backup(): Promise<void> {
    const { main, backup } = this.keys;
    await this.guard("backup", () =>
      COPY_SPACE.run(
        this.client,
        [main.meta, main.ids, main.seq, backup.meta, backup.ids, backup.seq, this.keys.backupAt],
        [main.base, backup.base, Date.now(), SCHEMA_VERSION],
      ),
    );
  }

  async restore(): Promise<RestoreResult> {
    const { main, backup } = this.keys;
    this.forget();
    const stamp = `${new Date().toISOString().replace(/[-:.]/g, "")}-${randomUUID().slice(0, 8)}`;
    const aside = this.keys.aside(stamp);
    const result = await this.guard("restore", () =>
      RESTORE.run(
        this.client,
        [main.meta, main.ids, main.seq, backup.meta, backup.ids, backup.seq, aside.meta, aside.ids, aside.seq, this.keys.rev],
        [main.base, backup.base, aside.base, this.keys.channel, this.instance],
      ),
    );
    if (result === 0) throw new CorruptDataError(`redis: the store ${this.keys.tag} has no backup to restore`);
    return {
      ...(result === 2 ? { movedTo: `redis:${aside.base}*` } : {}),
      restoredFrom: `redis:${backup.base}*`,
    };
  }

  async acquireLock(): Promise<void> {
    await this.guard("acquireLock", () => this.lock.acquire());
  }

  async releaseLock(): Promise<void> {
    await this.guard("releaseLock", () => this.lock.release());
  }

  watch(listener: () => void): () => void {
    this.listeners.add(listener);
    if (!this.subscriber) {
      // A subscribed connection can do nothing else, so it is a connection of its own. It queues
      // while offline and resubscribes after a reconnect (ioredis defaults).
      const subscriber =
        this.client instanceof Cluster
          ? this.client.duplicate(undefined, { enableOfflineQueue: true, lazyConnect: false })
          : this.client.duplicate({ enableOfflineQueue: true, lazyConnect: false, maxRetriesPerRequest: null });
      subscriber.on("error", () => undefined);
      subscriber.on("message", (_channel: string, from: string) => {
        if (from === this.instance) return;
        for (const each of this.listeners) each();
      });
      // Also on a channel of its own, which nobody publishes to: the commit script compares the
      // two counts to learn whether anyone but this instance listens (see COMMIT).
      const channels = this.ownChannel ? [this.keys.channel, this.ownChannel] : [this.keys.channel];
      this.subscribed = subscriber.subscribe(...channels).then(
        () => undefined,
        (error: Error) => this.context?.warn(error),
      );
      this.subscriber = subscriber;
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stopWatching();
    };
  }

  async describe(): Promise<DriverDescription> {
    return this.guard("describe", async () => {
      const [backupAt, holder] = await Promise.all([this.client.get(this.keys.backupAt), this.lock.holder()]);
      const nodes = this.client instanceof Cluster ? this.client.nodes("master").map(address) : [address(this.client)];
      return {
        driver: this.name,
        location: `redis://${nodes.join(",")} ${this.keys.tag}`,
        ...(backupAt ? { lastBackupAt: Number(backupAt) } : {}),
        lockHolder: holder ? { pid: holder.pid, host: holder.host, since: holder.since } : null,
      };
    });
  }

  async close(): Promise<void> {
    this.lock.stopRenewing();
    await this.lock.release().catch(() => undefined);
    this.listeners.clear();
    this.stopWatching();
    if (this.ownsClient) await this.client.quit().catch(() => this.client.disconnect());
  }

  /** Test aid: the keys of this store (layout documented in the README). */
  get storeKeys(): StoreKeys {
    return this.keys;
  }

  /** Test aid: the ioredis client in use. */
  get redis(): Redis | Cluster {
    return this.client;
  }

  // -------------------------------------------------------------------------------------------

  /** A task's stored JSON and log length: from the cache, or (when `fresh` or unknown) from Redis. */
  private async readHead(id: string, fresh: boolean, withVersion: boolean): Promise<ReadCheck> {
    const cached = fresh ? undefined : this.heads.get(id);
    if (cached) return cached;
    if (!fresh) return { id, raw: null, sha: "", logCount: 0 }; // guessed absent; the commit checks it
    const { main } = this.keys;
    const multi = this.client.multi().get(main.task(id)).llen(main.log(id));
    if (withVersion) multi.hget(main.meta, "version");
    const replies = await this.guard("read", async () => (await multi.exec()) ?? []);
    const raw = replyOf<string | null>(replies[0]);
    const check: ReadCheck = { id, raw, sha: raw === null ? "" : sha1(raw), logCount: replyOf<number>(replies[1]) };
    this.remember(check);
    if (withVersion) return { ...check, version: replyOf<string | null>(replies[2]) ?? "" };
    return check;
  }

  /**
   * Learns whether the commit named `txId`, sent but unanswered, was applied: "1" it was, "void" it
   * was not and now never will be (SETTLE fences it). Asks until the server answers, up to
   * `confirmTimeoutMs` (the client reconnects meanwhile); undefined when it never did.
   */
  private async settle(txId: string): Promise<string | undefined> {
    const deadline = Date.now() + this.confirmTimeoutMs;
    for (let round = 1; ; round++) {
      try {
        return String(await SETTLE.run(this.client, [this.keys.tx(txId)], [MARKER_TTL_MS]));
      } catch {
        if (Date.now() >= deadline) return undefined;
        await sleep(Math.min(25 * round, 250, Math.max(0, deadline - Date.now())));
      }
    }
  }

  private async commit(writes: WriteSet, checks: Map<string, ReadCheck>, version: string, txId: string): Promise<unknown> {
    const { main } = this.keys;
    const keys = [this.keys.lock, this.keys.rev, main.meta, main.ids, main.seq, this.keys.tx(txId)];
    const args: (string | number)[] = [this.lock.value, this.instance, this.keys.channel, Date.now(), checks.size, version];
    const newVersion = writes.version ? newer(version || SCHEMA_VERSION, writes.version) : version || SCHEMA_VERSION;
    args.push(newVersion, writes.puts.length, writes.logs.length, writes.deletes.length, MARKER_TTL_MS, this.ownChannel);
    for (const check of checks.values()) {
      keys.push(main.task(check.id), main.log(check.id));
      args.push(check.sha, check.logCount);
    }
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
    const result = await COMMIT.run(this.client, keys, args);
    if (result === 1) {
      for (const check of after.values()) this.remember(check);
      this.cachedVersion = newVersion;
    }
    return result;
  }

  private remember(check: ReadCheck): void {
    // Bounded: past the cap, start over (reads then go to Redis until the cache fills again).
    if (this.heads.size >= HEAD_CACHE_LIMIT) this.heads.clear();
    this.heads.set(check.id, { id: check.id, raw: check.raw, sha: check.sha, logCount: check.logCount });
  }

  private forget(): void {
    this.heads.clear();
    this.cachedVersion = undefined;
  }

  private decode(meta: Record<string, string>, ids: string[], replies: [Error | null, unknown][]): StorageData {
    const extra = meta.extra ? parseJson(meta.extra, "the store's extra fields") : {};
    const metaExtra = meta.metaExtra ? parseJson(meta.metaExtra, "the store's metadata") : {};
    const tasks: StoredTask[] = [];
    ids.forEach((id, i) => {
      const raw = replyOf<string | null>(replies[2 * i]);
      if (raw === null) return;
      const task = parseJson(raw, `task ${id}`) as StoredTask;
      const logs = replyOf<string[]>(replies[2 * i + 1]);
      task.logs = logs.map((entry, n) => parseJson(entry, `log entry ${n} of task ${id}`) as LogEntry);
      tasks.push(task);
      if (i < HEAD_CACHE_LIMIT) this.remember({ id, raw, sha: sha1(raw), logCount: logs.length });
    });
    this.cachedVersion = meta.version ?? "";
    return {
      ...extra,
      version: meta.version || SCHEMA_VERSION,
      tasks,
      metadata: { ...metaExtra, lastUpdated: Number(meta.lastUpdated ?? 0), totalTasks: tasks.length },
    } as StorageData;
  }

  private stopWatching(): void {
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    this.subscribed = undefined;
    // disconnect(), not quit(): quit() queues behind a pending SUBSCRIBE while offline and can
    // keep reconnecting, and the process alive, after close().
    subscriber?.disconnect();
  }

  /** Runs a Redis call; anything that is not a taskstore error becomes `StorageUnavailableError`. */
  private async guard<T>(operation: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      if (TaskStoreError.isInstance(error)) throw error;
      throw new StorageUnavailableError(`redis: ${operation} failed: ${(error as Error)?.message ?? String(error)}`, { cause: error });
    }
  }
}

/**
 * Whether a failed command may have reached the server and run (its reply was lost: connection
 * closed, timeout), as opposed to an error reply or a command the client refused to send.
 */
function unanswered(error: unknown): boolean {
  const cause = (error as { cause?: unknown })?.cause ?? error;
  if (TaskStoreError.isInstance(cause) || cause instanceof ReplyError) return false;
  return !/enableOfflineQueue options is false/.test(String((cause as Error)?.message ?? cause));
}

/** A reply of MULTI/EXEC: its value, or its error thrown (MULTI reports errors per command). */
function replyOf<T>(reply: [Error | null, unknown] | undefined): T {
  if (!reply) throw new StorageUnavailableError("redis: a transaction returned fewer replies than commands");
  if (reply[0]) throw reply[0];
  return reply[1] as T;
}

function checkReplies(replies: [Error | null, unknown][] | null): void {
  if (!replies) throw new StorageUnavailableError("redis: a transaction was aborted");
  for (const reply of replies) replyOf(reply);
}

function parseJson(text: string, what: string): Record<string, unknown> {
  try {
    const value = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not a JSON object");
    return value;
  } catch (error) {
    throw new CorruptDataError(`redis: ${what} is not a JSON object`, { cause: error });
  }
}

/** Waits for `promise`, or `ms` at most. */
async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/** crypto.hash (Node 20.12+) is a one-shot several times cheaper than a Hash object; it runs once per write. */
const sha1: (text: string) => string =
  typeof crypto.hash === "function"
    ? (text) => crypto.hash("sha1", text, "hex")
    : (text) => crypto.createHash("sha1").update(text, "utf8").digest("hex");

/** The newer of two semantic versions (the store never goes back a version). */
function newer(a: string, b: string): string {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) > (pb[i] ?? 0) ? a : b;
  return a;
}

function withoutLazyConnect(options: RedisOptions): RedisOptions {
  const { lazyConnect: _lazy, ...rest } = options;
  return rest;
}

function address(client: Redis): string {
  return `${client.options.host ?? "localhost"}:${client.options.port ?? 6379}`;
}
