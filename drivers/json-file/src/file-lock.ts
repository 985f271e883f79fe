import { randomUUID } from "node:crypto";
import fs, { promises as fsp } from "node:fs";
import os from "node:os";
import path from "node:path";
import { LockTimeoutError } from "@taskstore/core";
import lockfile from "proper-lockfile";
import { codeOf, DIR_MODE, FILE_MODE, readRegularFile } from "./atomic-file.js";

/** Who holds the lock, as recorded in `holder.json` inside the lock folder. */
export interface LockHolder {
  pid: number;
  host: string;
  since: number;
  /** Unique per acquisition, so a reclaimer can tell "the same dead holder" from a new one. */
  token: string;
}

export interface FileLockOptions {
  /** The lock folder, e.g. `.tasks.lock`. */
  lockPath: string;
  /** The file the lock guards (proper-lockfile's key for this lock within the process). */
  file: string;
  timeoutMs: number;
  staleMs: number;
  /** The lock was lost while held (its folder removed or taken over). Must not throw. */
  onCompromised(error: Error): void;
}

const HOLDER_FILE = "holder.json";
/** A reclaim guard older than this was left by a reclaimer that died; it is removed. */
const RECLAIM_GUARD_STALE_MS = 5_000;
/** A holder record is a few hundred bytes; anything larger is not one. */
const HOLDER_MAX_BYTES = 64 * 1024;
/**
 * proper-lockfile's own stale period: never reached. Its takeover (stat, remove, create) has no
 * guard, so two waiters could both remove the lock and the slower would remove the faster one's
 * fresh lock; every takeover goes through `reclaimIfDead` instead.
 */
const NEVER_STALE_MS = Number.MAX_SAFE_INTEGER;

type Callback = (error: NodeJS.ErrnoException | null) => void;

/**
 * The file system proper-lockfile sees. Its lock is a folder made with `mkdir`; here that folder
 * is built aside with `holder.json` inside and renamed into place, so a lock folder never exists
 * without its holder (a holder killed mid-acquisition leaves only a `.new` leftover, not a
 * nameless lock that would need the stale period). Removal renames the folder away first, so
 * the lock path never shows a half-removed folder that a rename could land on.
 */
const lockFs = {
  ...fs,
  mkdir: (dir: string, callback: Callback) => {
    createLockDir(dir).then(() => callback(null), callback);
  },
  rmdir: (dir: string, callback: Callback) => {
    removeLockDir(dir).then(() => callback(null), callback);
  },
  rmdirSync: (dir: string) => {
    const away = `${dir}.${process.pid}-${randomUUID().slice(0, 8)}.old`;
    try {
      fs.renameSync(dir, away);
    } catch (error) {
      if (codeOf(error) === "ENOENT") return;
      throw error;
    }
    fs.rmSync(away, { recursive: true, force: true });
  },
};

async function createLockDir(dir: string): Promise<void> {
  const building = `${dir}.${process.pid}-${randomUUID().slice(0, 8)}.new`;
  await fsp.mkdir(building, { mode: DIR_MODE });
  try {
    await fsp.chmod(building, DIR_MODE);
    const holder: LockHolder = { pid: process.pid, host: os.hostname(), since: Date.now(), token: randomUUID() };
    await fsp.writeFile(path.join(building, HOLDER_FILE), JSON.stringify(holder), { mode: FILE_MODE, flag: "wx" });
    await fsp.rename(building, dir);
  } catch (error) {
    await fsp.rm(building, { recursive: true, force: true }).catch(() => undefined);
    // A lock folder is already there (never empty: see above): tell proper-lockfile "EEXIST".
    // ENOTDIR: something that is not a folder is at the lock path (a regular file, a symlink);
    // it is no lock, and `reclaimIfDead` removes it, so it too is reported as "held".
    if (["ENOTEMPTY", "EEXIST", "EISDIR", "ENOTDIR"].includes(codeOf(error) ?? ""))
      throw Object.assign(new Error(`${dir} exists`), { code: "EEXIST" });
    throw error;
  }
}

/** Removes a lock folder atomically: renamed away (or already gone), then deleted. */
async function removeLockDir(dir: string): Promise<void> {
  const away = `${dir}.${process.pid}-${randomUUID().slice(0, 8)}.old`;
  await fsp.rename(dir, away); // ENOENT is passed on: proper-lockfile ignores it
  await fsp.rm(away, { recursive: true, force: true });
}

/**
 * A cross-process lock: a folder created atomically (proper-lockfile) and kept fresh while held.
 * The holder is recorded. A waiter takes the lock over (through one guarded path, `reclaimIfDead`)
 * when its holder is a process of this host that is gone, or when it was not refreshed for `staleMs`.
 */
export class FileLock {
  private release: (() => Promise<void>) | undefined;
  private state: "free" | "held" | "compromised" = "free";

  constructor(private readonly options: FileLockOptions) {}

  /** True when the lock was lost since it was acquired (until the next `acquire`). */
  get compromised(): boolean {
    return this.state === "compromised";
  }

  get held(): boolean {
    return this.state === "held";
  }

  async acquire(): Promise<void> {
    const { lockPath, timeoutMs } = this.options;
    const deadline = Date.now() + timeoutMs;
    let delay = 2;
    for (;;) {
      const release = await this.tryLock();
      if (release) {
        this.release = release;
        this.state = "held";
        return;
      }
      if (await reclaimIfDead(lockPath, this.options.staleMs)) continue;
      const left = deadline - Date.now();
      if (left <= 0) {
        const holder = await readHolder(lockPath);
        const who = holder ? ` (held by pid ${holder.pid} on ${holder.host} since ${new Date(holder.since).toISOString()})` : "";
        throw new LockTimeoutError(`json-file: could not acquire ${lockPath} within ${timeoutMs} ms${who}`);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(left, delay * (0.5 + Math.random()))));
      delay = Math.min(delay * 2, 100);
    }
  }

  /** Releases the lock if held; a lost lock is only forgotten (its folder may be someone else's now). */
  async releaseLock(): Promise<void> {
    const release = this.release;
    this.release = undefined;
    const wasHeld = this.state === "held";
    this.state = "free";
    if (!release || !wasHeld) return;
    try {
      await release();
    } catch (error) {
      if (codeOf(error) !== "ERELEASED") throw error;
    }
  }

  private async tryLock(): Promise<(() => Promise<void>) | undefined> {
    const { lockPath, file, staleMs } = this.options;
    let release: () => Promise<void>;
    try {
      release = await lockfile.lock(file, {
        lockfilePath: lockPath,
        realpath: false,
        stale: NEVER_STALE_MS,
        update: staleMs / 2, // the holder still refreshes the folder's mtime, which reclaimIfDead reads
        retries: 0,
        fs: lockFs,
        onCompromised: (error) => {
          if (this.release !== release) return; // an earlier acquisition, already released
          this.state = "compromised";
          this.release = undefined;
          this.options.onCompromised(error);
        },
      });
    } catch (error) {
      if (codeOf(error) === "ELOCKED") return undefined;
      throw error;
    }
    return release;
  }
}

/** The recorded holder of the lock at `lockPath`, or undefined when there is no lock (or its record is unreadable). */
export async function readHolder(lockPath: string): Promise<LockHolder | undefined> {
  try {
    // Only a small regular file is read: a FIFO planted there would block a plain read for good.
    const found = await readRegularFile(path.join(lockPath, HOLDER_FILE), HOLDER_MAX_BYTES);
    if (found.kind !== "file") return undefined;
    const parsed = JSON.parse(found.bytes.toString("utf8")) as LockHolder;
    return typeof parsed.pid === "number" && typeof parsed.host === "string" ? parsed : undefined;
  } catch {
    return undefined; // no lock, or a record damaged by a power cut: staleness decides
  }
}

/** The lock as a waiter sees it: its holder record (if readable) and the folder's last refresh. */
interface SeenLock {
  token: string | undefined;
  mtimeMs: number;
  ino: number;
}

/**
 * The lock at `lockPath` when it is dead, else undefined. Dead: not a folder at all (a regular
 * file, a symlink, a FIFO: no version of this driver or of proper-lockfile makes one, so no
 * live holder stands behind it; taken over at once), or a holder gone from this host, or an
 * mtime more than `staleMs` away from now: in the past (it stopped refreshing) or in the future
 * (a clock set wrong, a folder copied from elsewhere: a live holder refreshes it to its own now).
 * A lock dated less than `staleMs` ahead becomes stale once it is `staleMs` old.
 */
async function deadLock(lockPath: string, staleMs: number): Promise<SeenLock | undefined> {
  const entry = await fsp.lstat(lockPath).catch(() => undefined);
  if (!entry) return undefined; // no lock: proper-lockfile takes it
  if (!entry.isDirectory()) return { token: undefined, mtimeMs: entry.mtimeMs, ino: entry.ino };
  const holder = await readHolder(lockPath);
  const seen = { token: holder?.token, mtimeMs: entry.mtimeMs, ino: entry.ino };
  if (Math.abs(Date.now() - entry.mtimeMs) > staleMs) return seen; // any holder, any host: it stopped refreshing
  if (holder && holder.host === os.hostname() && !isAlive(holder.pid)) return seen;
  return undefined;
}

/**
 * Removes the lock when it is dead (see `deadLock`); the only way a lock is ever taken over.
 * Reclaimers take a guard folder first and check under it that the lock is still the same dead
 * one (same token, same mtime), so two waiters never both remove a lock (the second would remove
 * the first one's fresh lock).
 */
async function reclaimIfDead(lockPath: string, staleMs: number): Promise<boolean> {
  const seen = await deadLock(lockPath, staleMs);
  if (!seen) return false;
  const guard = `${lockPath}.reclaim`;
  try {
    await fsp.mkdir(guard, { mode: DIR_MODE });
  } catch (error) {
    if (codeOf(error) !== "EEXIST") throw error;
    const stat = await fsp.stat(guard).catch(() => undefined);
    if (stat && Date.now() - stat.mtimeMs > RECLAIM_GUARD_STALE_MS) await fsp.rm(guard, { recursive: true, force: true });
    return false;
  }
  try {
    const again = await deadLock(lockPath, staleMs);
    if (!again || again.token !== seen.token || again.mtimeMs !== seen.mtimeMs || again.ino !== seen.ino) return false;
    await removeLockDir(lockPath).catch((error) => {
      if (codeOf(error) !== "ENOENT") throw error;
    });
    return true;
  } finally {
    await fsp.rm(guard, { recursive: true, force: true });
  }
}

/** Matches `.tasks.lock.<pid>-<id>.new|.old` folders and captures the pid. */
export function lockLeftoverPattern(lockName: string): RegExp {
  return new RegExp(`^${lockName.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\.(\\d+)-[0-9a-f]{8}\\.(new|old)$`);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return codeOf(error) === "EPERM"; // exists, but belongs to another user
  }
}
