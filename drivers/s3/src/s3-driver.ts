import { randomBytes } from "node:crypto";
import { S3Client } from "@aws-sdk/client-s3";
import {
  DRIVER_SPECIFICATION_VERSION,
  type DriverCapabilities,
  type DriverContext,
  type DriverDescription,
  isLoadableStore,
  Mutex,
  numberOption,
  type RestoreResult,
  resolveOption,
  type StorageData,
  type StorageDriver,
  type StoreReader,
  sleep,
  type WriteSet,
} from "@taskstore/core";
import { errors } from "./s3-errors.js";
import { type EtagQuoting, S3Io } from "./s3-io.js";
import { S3Lease } from "./s3-lease.js";
import { probeConditionalWrites } from "./s3-probe.js";
import { EPOCHS, EpochStore, HEAD_KEY, type State } from "./s3-store.js";

export interface S3StorageDriverOptions {
  /** The bucket. It must exist. */
  bucket: string;
  /** Key prefix of this store; every object lives under it. Default `"taskstore/"`. A `/` is added when missing. */
  prefix?: string;
  /** Your own S3Client. The driver never destroys it; the options below that configure a client are then ignored. */
  client?: S3Client;
  /** S3-compatible endpoint, e.g. `http://127.0.0.1:9000`. Default: AWS, by region. */
  endpoint?: string;
  /** Default: `AWS_REGION`, else `us-east-1`. */
  region?: string;
  /** Path-style addressing (`endpoint/bucket/key`), which MinIO and Ceph RGW want. Default: true when `endpoint` is set. */
  forcePathStyle?: boolean;
  /** Default: the SDK's usual chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles, instance roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Attempts per request, counting the first, with the SDK's jittered backoff on 5xx, throttling, timeouts and dropped connections. Default 5. */
  maxAttempts?: number;
  /** Per-request socket timeout in ms (then retried). Default 15,000. */
  requestTimeoutMs?: number;
  /**
   * How `If-Match` spells an ETag. `"standard"`: quoted, as RFC 7232 and AWS S3 say. `"unquoted"`:
   * the bare hex, which is all Ceph RGW 16 matches (it answers a correct quoted ETag with 412).
   * `"auto"` (default): found by the probe at `initialize()`. The condition is never dropped.
   */
  etagQuoting?: EtagQuoting | "auto";
  /**
   * DANGER. Skip the `initialize()` probe that refuses servers ignoring conditional writes.
   * On such a server (s3rver and other fakes) concurrent writers silently overwrite each other's
   * changes. Only for a store that one process writes, on a server you cannot replace. Default false.
   */
  unsafeAllowUnconditionalWrites?: boolean;
  /** How long `acquireLock()`, and a change set meeting another instance's lock, wait before `LockTimeoutError`. Default 30,000 ms. */
  lockTimeoutMs?: number;
  /**
   * How long the lock of a holder that vanished blocks others: the lease length, renewed every
   * third of it while held. Default 30,000 ms.
   */
  lockExpiryMs?: number;
  /** @deprecated Use `lockExpiryMs` (the same value); accepted until the next minor version. */
  leaseMs?: number;
  /**
   * How many times one change set is run again when other writers keep committing first (412),
   * before `ConflictError` (retries: the first run is not counted). Default 39 (40 runs in all).
   */
  maxConflictRetries?: number;
  /** Compact after this many deltas in an epoch. Default 500. */
  maxDeltas?: number;
  /** Sealed epochs are deleted this long after they were replaced. Default 15 minutes. */
  retiredEpochGraceMs?: number;
}

/**
 * Tasks in an S3 bucket (AWS S3, MinIO, Ceph RGW): a base snapshot plus one small delta object
 * per committed change set, each committed by a conditional create (see s3-store.ts and the
 * README for the layout).
 */
export class S3StorageDriver implements StorageDriver {
  readonly name = "s3";
  /** The contract this driver was written against. */
  readonly specificationVersion = DRIVER_SPECIFICATION_VERSION;
  readonly capabilities: Partial<DriverCapabilities> = {
    locking: true,
    incremental: true,
    backup: true,
    restore: true,
    persistent: true,
    changeNotification: false,
  };
  private readonly client: S3Client;
  private readonly ownsClient: boolean;
  private readonly io: S3Io;
  private readonly store: EpochStore;
  private readonly lease: S3Lease;
  private readonly options: S3StorageDriverOptions;
  private readonly maxConflictRetries: number;
  private readonly lockTimeoutMs: number;
  private context: DriverContext | undefined;
  private initializing: Promise<void> | undefined;
  private readonly queue = new Mutex();
  private lastBackupStamp = "";

  constructor(options: S3StorageDriverOptions) {
    if (!options?.bucket || typeof options.bucket !== "string") {
      throw errors.invalidOption("bucket", "is required (the name of a bucket that exists)");
    }
    const quoting = options.etagQuoting;
    if (quoting !== undefined && quoting !== "auto" && quoting !== "standard" && quoting !== "unquoted") {
      throw errors.invalidOption("etagQuoting", `must be "auto", "standard" or "unquoted", not ${JSON.stringify(quoting)}`);
    }
    const { name } = this;
    const requestTimeoutMs = numberOption(options.requestTimeoutMs, "requestTimeoutMs", name, 15_000, { min: 1 });
    const maxAttempts = numberOption(options.maxAttempts, "maxAttempts", name, 5, { min: 1, integer: true });
    this.lockTimeoutMs = numberOption(options.lockTimeoutMs, "lockTimeoutMs", name, 30_000);
    const lockExpiryMs = numberOption(resolveOption(options, "lockExpiryMs", "leaseMs", name), "lockExpiryMs", name, 30_000, { min: 1 });
    this.maxConflictRetries = numberOption(options.maxConflictRetries, "maxConflictRetries", name, 39, { integer: true });
    const maxDeltas = numberOption(options.maxDeltas, "maxDeltas", name, 500, { min: 1, integer: true });
    const retiredGraceMs = numberOption(options.retiredEpochGraceMs, "retiredEpochGraceMs", name, 15 * 60_000);
    this.options = options;
    let prefix = options.prefix ?? "taskstore/";
    if (prefix !== "" && !prefix.endsWith("/")) prefix += "/";
    this.ownsClient = !options.client;
    this.client =
      options.client ??
      new S3Client({
        region: options.region ?? process.env.AWS_REGION ?? "us-east-1",
        ...(options.endpoint ? { endpoint: options.endpoint } : {}),
        forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
        ...(options.credentials ? { credentials: options.credentials } : {}),
        maxAttempts,
        retryMode: "standard",
        // throwOnRequestTimeout: without it the SDK only logs a request past its timeout and keeps waiting.
        requestHandler: {
          requestTimeout: requestTimeoutMs,
          socketTimeout: requestTimeoutMs,
          throwOnRequestTimeout: true,
          connectionTimeout: 5_000,
        },
        // Checksums only where S3 requires them: S3-compatible servers differ in what they accept.
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
      });
    this.io = new S3Io(this.client, options.bucket, prefix);
    if (options.etagQuoting && options.etagQuoting !== "auto") this.io.etagQuoting = options.etagQuoting;
    const warn = (error: Error) => this.context?.warn(error);
    this.store = new EpochStore(this.io, { maxDeltas, minCompactBytes: 1024 * 1024, retiredGraceMs }, warn);
    this.lease = new S3Lease(this.io, lockExpiryMs, this.lockTimeoutMs, warn);
  }

  attach(context: DriverContext): void {
    this.context = context;
  }

  /** Checks that the endpoint enforces conditional writes (and how it wants ETags quoted). Runs once. */
  initialize(): Promise<void> {
    this.initializing ??= (async () => {
      if (this.options.unsafeAllowUnconditionalWrites) return;
      this.io.etagQuoting = await probeConditionalWrites(this.io, this.options.etagQuoting ?? "auto");
    })();
    this.initializing.catch(() => {
      this.initializing = undefined;
    });
    return this.initializing;
  }

  loadData(): Promise<StorageData> {
    return this.exclusive(async () => this.store.toData(await this.store.refresh()));
  }

  saveData(data: StorageData): Promise<void> {
    return this.exclusive(async () => {
      await this.store.replace(data, false);
    });
  }

  transact(work: (reader: StoreReader) => Promise<WriteSet>): Promise<void> {
    return this.exclusive(async () => {
      // Only commits another writer beat count towards maxConflictRetries; rounds spent waiting
      // for another instance's lock are bounded by lockTimeoutMs instead.
      const lockDeadline = Date.now() + this.lockTimeoutMs;
      let conflicts = 0;
      let wait = 10;
      for (;;) {
        const state: State = await this.store.refresh();
        const writes = await work(state.table.reader());
        if (writes.puts.length === 0 && writes.logs.length === 0 && writes.deletes.length === 0 && writes.version === undefined) return;
        // Another instance holding the lock (lock -> load -> save -> unlock) is waited for; the
        // store is re-read after the wait, since the holder may have replaced it.
        if ((await this.lease.holder()) !== undefined && !this.lease.held) {
          if (Date.now() >= lockDeadline) throw errors.lockTimeout(`a change set waited ${this.lockTimeoutMs} ms for the store lock`);
          await this.lease.waitUntilFree();
          continue;
        }
        if (await this.store.commit(state, writes)) return;
        // A store that did not exist yet was created by commit(): not a conflict, run again on it.
        if (state.epoch === undefined) continue;
        if (++conflicts > this.maxConflictRetries) {
          throw errors.conflict(
            `gave up after ${conflicts} attempts: other writers kept committing to s3://${this.io.bucket}/${this.io.prefix} first`,
          );
        }
        await sleep(wait * Math.random());
        wait = Math.min(wait * 2, 400);
      }
    });
  }

  /** Copies the store, as it is now, to `<prefix>backups/<UTC time>.json`. */
  backup(): Promise<void> {
    return this.exclusive(async () => {
      const data = this.store.toData(await this.store.refresh());
      let stamp = new Date().toISOString().replace(/[:.]/g, "-");
      // Keys sort by time; a second backup within the same millisecond (or a clock step back)
      // gets "~" and a counter, which sort after the plain stamp and after each other.
      if (stamp <= this.lastBackupStamp) {
        const base = this.lastBackupStamp.split("~")[0] as string;
        const count = Number(this.lastBackupStamp.split("~")[1] ?? "0") + 1;
        stamp = `${base}~${String(count).padStart(6, "0")}`;
      }
      this.lastBackupStamp = stamp;
      await this.io.putIfAbsent(`backups/${stamp}-${randomBytes(3).toString("hex")}.json`, JSON.stringify(data));
    });
  }

  /**
   * Copies the live store to `<prefix>aside/<UTC time>/` (nothing is deleted), then installs the
   * newest backup that parses as the store. No usable backup: `CorruptDataError`, store untouched.
   */
  restore(): Promise<RestoreResult> {
    return this.exclusive(async () => {
      const backups = (await this.io.list("backups/"))
        .map((item) => item.key)
        .sort()
        .reverse();
      let chosen: { key: string; data: StorageData } | undefined;
      for (const key of backups) {
        const found = await this.io.get(key);
        try {
          const data = JSON.parse(found?.body ?? "") as StorageData;
          // backup() writes stores only; a legacy array here was not written by it.
          if (isLoadableStore(data) && !Array.isArray(data)) chosen = { key, data };
        } catch {
          // not usable: try the one before
        }
        if (chosen) break;
      }
      const where = `s3://${this.io.bucket}/${this.io.prefix}`;
      if (!chosen) throw errors.corrupt(`no usable backup under ${where}backups/`);
      const live = await this.store.liveKeys();
      const aside = `aside/${new Date().toISOString().replace(/[:.]/g, "-")}-${randomBytes(3).toString("hex")}/`;
      for (let i = 0; i < live.length; i += 16) {
        await Promise.all(live.slice(i, i + 16).map((key) => this.io.copy(key, aside + key)));
      }
      const epoch = await this.store.replace(chosen.data, true);
      // The replaced store's epochs are sealed now. Deltas that writers still on them committed
      // after the copy above and before the seal (and the seal) belong to the replaced store:
      // copy them aside too, so everything acknowledged is in the store or in the aside copy.
      const copied = new Set(live);
      const late = (await this.store.liveKeys()).filter(
        (key) => key !== HEAD_KEY && !copied.has(key) && !key.startsWith(`${EPOCHS}${epoch}/`),
      );
      await Promise.all(late.map((key) => this.io.copy(key, aside + key)));
      return { ...(live.length > 0 ? { movedTo: where + aside } : {}), restoredFrom: where + chosen.key };
    });
  }

  async acquireLock(): Promise<void> {
    await this.initialize();
    await this.lease.acquire();
  }

  async releaseLock(): Promise<void> {
    await this.lease.release();
  }

  async describe(): Promise<DriverDescription> {
    const state = await this.exclusive(() => this.store.refresh());
    const backups = await this.io.list("backups/");
    const holder = await this.lease.holder();
    return {
      driver: this.name,
      location: `s3://${this.io.bucket}/${this.io.prefix}`,
      sizeBytes: state.baseBytes + state.deltaBytes,
      ...(backups.length > 0 ? { lastBackupAt: Math.max(...backups.map((item) => item.lastModified)) } : {}),
      lockHolder: holder ? { pid: holder.pid, host: holder.host, since: holder.since } : null,
      etagQuoting: this.io.etagQuoting,
    };
  }

  async close(): Promise<void> {
    await this.lease.release().catch(() => undefined);
    if (this.ownsClient) this.client.destroy();
  }

  /**
   * One store operation at a time per instance: they share the cached state. Each waits for
   * `initialize()` first, since the ETag form it finds is needed by every conditional replace.
   */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    return this.queue.run(async () => {
      await this.initialize();
      return work();
    });
  }
}
