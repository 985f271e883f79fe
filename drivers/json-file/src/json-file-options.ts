import { resolveOption } from "@taskstore/core";
import { READ_LIMIT_BYTES } from "./json-file-atomic.js";
import { errors } from "./json-file-errors.js";

/** The default `maxStoreBytes`: 256 MiB, well below what the driver can read back (`READ_LIMIT_BYTES`, about 512 MiB). */
export const DEFAULT_MAX_STORE_BYTES = Math.min(256 * 1024 * 1024, READ_LIMIT_BYTES);

export interface JSONFileStorageDriverOptions {
  /** The store file. Default `~/.config/kilocode/tasks.json` (`$XDG_CONFIG_HOME`, `%APPDATA%` on Windows). */
  path?: string;
  /** How long `acquireLock()` waits before `LockTimeoutError`. Default 30,000 ms. */
  lockTimeoutMs?: number;
  /**
   * A lock not refreshed for this long is taken over. A holder whose process can be checked (same
   * host, boot and PID namespace) and is gone is reclaimed at once. Default 10,000 ms; at least 2,000.
   */
  lockExpiryMs?: number;
  /** @deprecated Use `lockExpiryMs` (the same value); accepted until the next minor version. */
  staleMs?: number;
  /** The automatic backup is refreshed before a write at most this often. Default 10 minutes; 0 = before every write. */
  backupIntervalMs?: number;
  /**
   * The largest store a write may make, in bytes (of `tasks.json` once the journal is folded into
   * it). A write that would make it larger (and larger than it is now) is refused with
   * `VALIDATION` (rule `max_store_size`) and nothing is written. Default 256 MiB; at most
   * `READ_LIMIT_BYTES` (V8's longest string, about 512 MiB), since a larger file could never be read back.
   */
  maxStoreBytes?: number;
  /** The journal is folded into `tasks.json` once it is larger than this and than `compactionRatio` times `tasks.json`. Default 256 KiB. */
  compactionBytes?: number;
  /** See `compactionBytes`. Default 0.25. */
  compactionRatio?: number;
  /**
   * `close()` folds the journal into `tasks.json` when the whole store is at most this many bytes
   * and the lock is free at once. Default 64 KiB; 0: never.
   */
  compactOnCloseBytes?: number;
  /** How often `watch()` looks at the journal besides `fs.watch` (which network folders do not report). Default 250 ms. */
  watchIntervalMs?: number;
  /**
   * After a write, the lock stays held this long for this instance's next write (taking and
   * releasing it costs several file system operations): a sequential writer takes it once. It is
   * let go at once when another instance waits for it, and after 100 ms of writes all the same.
   * Default 5 ms; 0: released after every write.
   */
  lockLingerMs?: number;
}

/** The options with their defaults applied, checked. */
export interface Settings {
  lockTimeoutMs: number;
  lockExpiryMs: number;
  backupIntervalMs: number;
  maxStoreBytes: number;
  compactionBytes: number;
  compactionRatio: number;
  compactOnCloseBytes: number;
  watchIntervalMs: number;
  lockLingerMs: number;
}

const COMPACTION_BYTES = 256 * 1024;
const COMPACTION_RATIO = 0.25;
const COMPACT_ON_CLOSE_BYTES = 64 * 1024;
const LOCK_LINGER_MS = 5;

/** The settings `opts` ask for; a value out of range is a `ValidationError` naming the option. */
export function settingsOf(opts: JSONFileStorageDriverOptions): Settings {
  const backupIntervalMs = opts.backupIntervalMs ?? 10 * 60_000;
  const maxStoreBytes = opts.maxStoreBytes ?? DEFAULT_MAX_STORE_BYTES;
  const compactionBytes = opts.compactionBytes ?? COMPACTION_BYTES;
  const compactionRatio = opts.compactionRatio ?? COMPACTION_RATIO;
  const compactOnCloseBytes = opts.compactOnCloseBytes ?? COMPACT_ON_CLOSE_BYTES;
  const watchIntervalMs = opts.watchIntervalMs ?? 250;
  const lockLingerMs = opts.lockLingerMs ?? LOCK_LINGER_MS;
  if (!Number.isSafeInteger(maxStoreBytes) || maxStoreBytes < 1 || maxStoreBytes > READ_LIMIT_BYTES) {
    throw errors.validation([
      { path: ["maxStoreBytes"], rule: "range", message: `must be a whole number of bytes from 1 to ${READ_LIMIT_BYTES}` },
    ]);
  }
  for (const [key, value] of Object.entries({ compactionBytes, compactionRatio, compactOnCloseBytes, watchIntervalMs, lockLingerMs })) {
    if (!Number.isFinite(value) || value < 0) {
      throw errors.validation([{ path: [key], rule: "range", message: "must be a number of at least 0" }]);
    }
  }
  return {
    lockTimeoutMs: opts.lockTimeoutMs ?? 30_000,
    lockExpiryMs: Math.max(resolveOption(opts, "lockExpiryMs", "staleMs", errors.driver) ?? 10_000, 2_000),
    backupIntervalMs,
    maxStoreBytes,
    compactionBytes,
    compactionRatio,
    compactOnCloseBytes,
    watchIntervalMs,
    lockLingerMs,
  };
}
