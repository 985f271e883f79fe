import { randomUUID } from "node:crypto";
import fs, { promises as fsp } from "node:fs";
import path from "node:path";
import { StorageUnavailableError, sleep } from "@taskstore/core";
import lockfile from "proper-lockfile";
import { codeOf, DIR_MODE, type Fence, FILE_MODE, readRegularFile } from "./json-file-atomic.js";
import { errors } from "./json-file-errors.js";
import { canCheckPid, isGone, ownIdentity, type ProcessIdentity } from "./json-file-host-identity.js";

export { isAlive } from "./json-file-host-identity.js";

/** Who holds the lock, as recorded in `holder.json` inside the lock folder. */
export interface LockHolder extends ProcessIdentity {
  since: number;
  /** Unique per acquisition: what a reclaimer, a releaser and a fenced write compare. */
  token: string;
}

export interface FileLockOptions {
  /** The lock folder, e.g. `.tasks.lock`. */
  lockPath: string;
  /** The file the lock guards (proper-lockfile's key for this lock within the process). */
  file: string;
  timeoutMs: number;
  staleMs: number;
  /**
   * After `releaseSoon()` the lock stays held this long for the next write of this instance
   * (taking and releasing the folder costs several file system operations); 0: released at once.
   */
  lingerMs?: number;
  /** A lock kept for further writes is released after this long all the same, and at once when another waits for it. */
  maxHoldMs?: number;
  /** The lock was lost while held (its folder removed or taken over). Must not throw. */
  onCompromised(error: Error): void;
}

/**
 * A write found that the lock it was made under is no longer this holder's: the lock was taken
 * over (the holder stalled past the stale period) or removed. Nothing was published. Retryable:
 * the write is run again on fresh state once the lock is held again.
 */
export class LockLostError extends StorageUnavailableError {
  constructor(lockPath: string, options?: { cause?: unknown }) {
    super(
      errors.message(`the lock ${lockPath} is no longer this process's (taken over while it stalled, or removed); nothing was written`),
      options,
    );
  }
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

/** The folder inside the lock where the holder with `token` stages its fenced writes. */
function fencePath(lockPath: string, token: string): string {
  return path.join(lockPath, `fence-${token}`);
}

/** The folder inside the lock where waiters leave a note that they wait (so a holder keeping the lock lets it go). */
const QUEUE_DIR = "queue";
/** A holder that let the lock go for a waiter stays away this long, so that the waiter gets it. */
const YIELD_MS = 15;
/** A waiter that left its note looks again at least this often. */
const WAITER_POLL_MS = 4;

/**
 * A cross-process lock: a folder created atomically (proper-lockfile) and kept fresh while held.
 * The holder is recorded. A waiter takes the lock over (through one guarded path, `reclaimIfDead`)
 * when its holder is a process that is verifiably gone (same host, boot and PID namespace, pid
 * gone), or when it was not refreshed for `staleMs`.
 *
 * A takeover of a holder that is alive but stalled (SIGSTOP, a suspended VM) cannot be told from
 * the takeover of a dead one, so the lock also fences: every write that replaces a file is staged
 * in a folder inside the holder's own lock folder (`fence()`), and published by a rename out of
 * it. A takeover removes the lock folder with everything in it, so a resumed holder's rename finds
 * nothing to rename and fails: it can never publish after the takeover.
 */
export class FileLock {
  private release: (() => Promise<void>) | undefined;
  private state: "free" | "held" | "compromised" = "free";
  /** The token of the lock folder this instance is building or holds. */
  private token: string | undefined;
  /** Kept after a write for the next one (see `releaseSoon`), until this timer releases it. */
  private lingering: NodeJS.Timeout | undefined;
  private heldSince = 0;
  /** Counts acquisitions: a caller can tell whether the lock was held without a break since it last looked. */
  private acquisitions = 0;
  private yieldUntil = 0;
  private queueLookedAt = 0;
  private releasing: Promise<void> = Promise.resolve();
  /** The token of this instance's lock folder whose release failed (see `releaseLock`). */
  private orphan: string | undefined;
  constructor(private readonly options: FileLockOptions) {}

  /** Changes with each acquisition (the lock was released and taken again in between when it differs). */
  get generation(): number {
    return this.acquisitions;
  }

  get held(): boolean {
    return this.state === "held";
  }

  /** Whether the lock is held and kept for this instance's next write (`releaseSoon`), not in use. */
  get kept(): boolean {
    return this.lingering !== undefined && this.state === "held";
  }

  /** Takes the lock, waiting up to `timeoutMs` (the configured timeout by default; 0: one attempt) before `LockTimeoutError`. */
  async acquire(timeoutMs: number = this.options.timeoutMs): Promise<void> {
    if (this.kept) {
      // Kept since the last write: still this instance's (a takeover meanwhile shows in what is
      // written under it: a fenced rename fails, a journal record finds its sequence taken).
      clearTimeout(this.lingering);
      this.lingering = undefined;
      return;
    }
    // A release of this instance's own still under way (a kept lock's timer): the folder goes first.
    await this.releasing;
    const { lockPath } = this.options;
    const deadline = Date.now() + timeoutMs;
    if (this.yieldUntil > Date.now() && timeoutMs > 0) await sleep(Math.min(this.yieldUntil - Date.now(), timeoutMs));
    let delay = 2;
    let announced: number | undefined;
    for (let attempt = 0; ; attempt++) {
      // The first attempt always tries (and shows as a `.new` folder); later ones look first, a
      // cheap lstat, and build a lock folder only when there is none.
      const present = attempt === 0 ? undefined : await fsp.lstat(lockPath).catch(() => undefined);
      const release = present ? undefined : await this.tryLock();
      if (release) {
        this.release = release;
        this.state = "held";
        this.heldSince = Date.now();
        this.acquisitions++;
        return;
      }
      if (this.orphan && (await this.removeOrphan())) continue;
      if (await reclaimIfDead(lockPath, this.options.staleMs)) continue;
      const left = deadline - Date.now();
      if (left <= 0) {
        const holder = await readHolder(lockPath);
        const who = holder ? ` (held by pid ${holder.pid} on ${holder.host} since ${new Date(holder.since).toISOString()})` : "";
        throw errors.lockTimeout(`could not acquire ${lockPath} within ${timeoutMs} ms${who}`);
      }
      // A note in the holder's queue: a holder keeping the lock between its writes lets it go.
      const seen = present ?? (await fsp.lstat(lockPath).catch(() => undefined));
      if (seen && seen.ino !== announced) {
        announced = seen.ino;
        await announce(lockPath);
      }
      await sleep(Math.min(left, delay * (0.5 + Math.random())));
      delay = Math.min(delay * 2, announced === undefined ? 100 : WAITER_POLL_MS);
    }
  }

  /**
   * Ends a write: the lock stays held for `lingerMs` for this instance's next write, unless it
   * was held for `maxHoldMs` already or someone waits for it (then it is released now, and this
   * instance stays away a moment so that the waiter gets it).
   */
  async releaseSoon(): Promise<void> {
    const { lingerMs = 0, maxHoldMs = 0 } = this.options;
    if (this.state !== "held") return this.releaseLock();
    if (lingerMs <= 0) return this.releaseLock();
    if (await this.waiters()) {
      this.yieldUntil = Date.now() + YIELD_MS;
      return this.releaseLock();
    }
    if (Date.now() - this.heldSince >= maxHoldMs) return this.releaseLock();
    const timer = setTimeout(() => {
      if (this.lingering !== timer) return;
      this.lingering = undefined;
      this.releaseLock().catch(() => undefined);
    }, lingerMs);
    timer.unref();
    this.lingering = timer;
  }

  /** Removes this instance's own lock folder that an earlier release could not remove. */
  private async removeOrphan(): Promise<boolean> {
    const { lockPath } = this.options;
    if ((await readHolder(lockPath))?.token !== this.orphan) {
      this.orphan = undefined; // gone, or taken over since: not ours any more
      return false;
    }
    try {
      await removeLockDir(lockPath);
    } catch (error) {
      // Still cannot be removed: that is the answer now (waiting would not change it).
      if (codeOf(error) !== "ENOENT") throw error;
    }
    this.orphan = undefined;
    return true;
  }

  /** Whether a waiter left a note in this holder's queue (looked at every few ms of writes, not after each). */
  private async waiters(): Promise<boolean> {
    const now = Date.now();
    if (now - this.queueLookedAt < WAITER_POLL_MS / 2) return false;
    this.queueLookedAt = now;
    const names = await fsp.readdir(path.join(this.options.lockPath, QUEUE_DIR)).catch(() => [] as string[]);
    return names.length > 0;
  }

  /** Releases the lock if held; a lost lock is only forgotten (its folder may be someone else's now). */
  async releaseLock(): Promise<void> {
    if (this.lingering) clearTimeout(this.lingering);
    this.lingering = undefined;
    const release = this.release;
    this.release = undefined;
    const wasHeld = this.state === "held";
    this.state = "free";
    if (!release || !wasHeld) {
      await this.releasing; // one under way (a kept lock's timer) is over when this resolves
      return;
    }
    const token = this.token;
    const releasing = release();
    this.releasing = releasing.then(
      () => undefined,
      () => undefined,
    );
    try {
      await releasing;
    } catch (error) {
      if (codeOf(error) === "ERELEASED") return;
      // The folder could not be removed (a folder made read-only, a full disk): it is still this
      // holder's, and the next acquisition removes it (nobody else would before the stale period).
      this.orphan = token;
      throw error;
    }
  }

  /**
   * The folder to stage a fenced write in: inside this holder's lock folder (made with it, before
   * it was renamed into place), so that a rename out of it, or a file made in it, can only
   * succeed while the lock folder is still this holder's. Throws `LockLostError` when the lock is lost.
   */
  async fence(): Promise<string> {
    const token = this.token;
    if (this.state !== "held" || !token) throw new LockLostError(this.options.lockPath);
    return fencePath(this.options.lockPath, token);
  }

  /** This lock as the fence of `writeFileAtomic`. */
  readonly asFence: Fence = {
    stage: () => this.fence(),
    verify: () => this.verify(),
    explain: (error) => this.explain(error),
  };

  /** Throws `LockLostError` (and marks the lock lost) unless the lock folder's holder record is this holder's. */
  async verify(): Promise<void> {
    const holder = await readHolder(this.options.lockPath);
    if (this.state !== "held" || !holder || holder.token !== this.token) throw this.lost();
  }

  /** A fenced write failed: when its fence is gone, the lock was lost (a `LockLostError`), else the error itself. */
  async explain(error: unknown): Promise<unknown> {
    if (error instanceof LockLostError) return error;
    const token = this.token;
    if (!token || !["ENOENT", "ENOTDIR"].includes(codeOf(error) ?? "")) return error;
    const fence = await fsp.lstat(fencePath(this.options.lockPath, token)).catch(() => undefined);
    return fence ? error : this.lost(error);
  }

  /** Marks the lock lost: it is not released (the folder may be another holder's) and nothing more is written under it. */
  private lost(cause?: unknown): LockLostError {
    if (this.lingering) clearTimeout(this.lingering);
    this.lingering = undefined;
    if (this.state === "held") {
      this.state = "compromised";
      const release = this.release;
      this.release = undefined;
      // Stops proper-lockfile's refresh of the folder; the release removes only a folder that is
      // still this holder's (removeOwnLockDir), so whatever is at the lock path now stays.
      if (release) this.releasing = release().catch(() => undefined);
    }
    return new LockLostError(this.options.lockPath, cause === undefined ? undefined : { cause });
  }

  /**
   * The file system proper-lockfile sees for one acquisition: its mkdir builds this holder's lock
   * folder (with a new token), its rmdir removes that folder only while it is still the one with
   * this token (a release after a takeover must not remove the new holder's).
   */
  private lockFs(): typeof fs {
    let token: string | undefined;
    return {
      ...fs,
      mkdir: (dir: string, callback: Callback) => {
        const holder: LockHolder = { ...ownIdentity(), since: Date.now(), token: randomUUID() };
        createLockDir(dir, holder).then(() => {
          token = holder.token;
          this.token = holder.token;
          callback(null);
        }, callback);
      },
      rmdir: (dir: string, callback: Callback) => {
        removeOwnLockDir(dir, token).then(() => callback(null), callback);
      },
      rmdirSync: (dir: string) => removeOwnLockDirSync(dir, token),
    } as unknown as typeof fs;
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
        fs: this.lockFs(),
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

/**
 * Builds the lock folder aside with `holder.json`, the fence and the queue inside and renames it
 * into place, so a lock folder never exists without its holder (a holder killed mid-acquisition
 * leaves only a `.new` leftover, not a nameless lock that would need the stale period), and
 * nothing is made in it afterwards (that would move the mtime proper-lockfile checks).
 */
async function createLockDir(dir: string, holder: LockHolder): Promise<void> {
  const building = `${dir}.${process.pid}-${randomUUID().slice(0, 8)}.new`;
  await fsp.mkdir(building, { mode: DIR_MODE });
  try {
    await fsp.chmod(building, DIR_MODE);
    await fsp.mkdir(path.join(building, `fence-${holder.token}`), { mode: DIR_MODE });
    await fsp.mkdir(path.join(building, QUEUE_DIR), { mode: DIR_MODE });
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

/** Leaves a note in the queue of the lock at `lockPath` (a lock of an older version has none: nothing then). */
async function announce(lockPath: string): Promise<void> {
  const note = path.join(lockPath, QUEUE_DIR, `${process.pid}-${randomUUID().slice(0, 8)}`);
  await fsp.writeFile(note, "", { flag: "wx", mode: FILE_MODE }).catch(() => undefined);
}

/** A fresh name beside the lock folder to rename it to before deleting it. */
function awayName(dir: string): string {
  return `${dir}.${process.pid}-${randomUUID().slice(0, 8)}.old`;
}

/** Removes a lock folder atomically: renamed away (or already gone), then deleted. Only for a lock known dead. */
async function removeLockDir(dir: string): Promise<void> {
  const away = awayName(dir);
  await fsp.rename(dir, away); // ENOENT is passed on: proper-lockfile ignores it
  await fsp.rm(away, { recursive: true, force: true });
}

/**
 * Releases this holder's lock folder, and only that: a holder whose lock was taken over while it
 * stalled must not remove the new holder's. The record is checked, the folder renamed away and
 * checked again (a takeover may land between the two); a folder found not to be ours after the
 * rename is put back if its place is still free (otherwise its holder's fenced writes fail and are
 * retried: it has lost its lock, but nothing is written under it).
 */
async function removeOwnLockDir(dir: string, token: string | undefined): Promise<void> {
  if (!token || (await readHolder(dir))?.token !== token) return;
  const away = awayName(dir);
  try {
    await fsp.rename(dir, away);
  } catch (error) {
    if (codeOf(error) === "ENOENT") return;
    throw error;
  }
  if ((await readHolder(away))?.token !== token) {
    try {
      await fsp.rename(away, dir);
      return;
    } catch {
      // a new lock took the place: the one moved away is lost to its holder either way
    }
  }
  // Released once renamed away; what cannot be deleted now is a leftover that `initialize()` removes.
  await fsp.rm(away, { recursive: true, force: true, maxRetries: 2 }).catch(() => undefined);
}

/** `removeOwnLockDir` for proper-lockfile's exit handler, which runs synchronously. */
function removeOwnLockDirSync(dir: string, token: string | undefined): void {
  if (!token || readHolderSync(dir)?.token !== token) return;
  const away = awayName(dir);
  try {
    fs.renameSync(dir, away);
  } catch (error) {
    if (codeOf(error) === "ENOENT") return;
    throw error;
  }
  if (readHolderSync(away)?.token !== token) {
    try {
      fs.renameSync(away, dir);
      return;
    } catch {
      // as above
    }
  }
  fs.rmSync(away, { recursive: true, force: true });
}

function parseHolder(text: string): LockHolder | undefined {
  const parsed = JSON.parse(text) as LockHolder;
  return typeof parsed.pid === "number" && typeof parsed.host === "string" ? parsed : undefined;
}

/** The recorded holder of the lock at `lockPath`, or undefined when there is no lock (or its record is unreadable). */
export async function readHolder(lockPath: string): Promise<LockHolder | undefined> {
  try {
    // Only a small regular file is read: a FIFO planted there would block a plain read for good.
    const found = await readRegularFile(path.join(lockPath, HOLDER_FILE), HOLDER_MAX_BYTES);
    if (found.kind !== "file") return undefined;
    return parseHolder(found.bytes.toString("utf8"));
  } catch {
    return undefined; // no lock, or a record damaged by a power cut: staleness decides
  }
}

function readHolderSync(lockPath: string): LockHolder | undefined {
  try {
    const file = path.join(lockPath, HOLDER_FILE);
    const stat = fs.lstatSync(file);
    if (!stat.isFile() || stat.size > HOLDER_MAX_BYTES) return undefined;
    return parseHolder(fs.readFileSync(file, "utf8"));
  } catch {
    return undefined;
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
 * live holder stands behind it; taken over at once), or a holder verifiably gone (see
 * `canCheckPid`: same host, boot and PID namespace; its pid gone or reused), or an mtime more
 * than `staleMs` away from now: in the past (it stopped refreshing) or in the future (a clock set
 * wrong, a folder copied from elsewhere: a live holder refreshes it to its own now). A lock dated
 * less than `staleMs` ahead becomes stale once it is `staleMs` old. A pid recorded in another
 * PID namespace (a container sharing the folder), on another host or in another boot is never
 * looked up here: it means nothing in this namespace, so only the stale period decides.
 */
async function deadLock(lockPath: string, staleMs: number): Promise<SeenLock | undefined> {
  const entry = await fsp.lstat(lockPath).catch(() => undefined);
  if (!entry) return undefined; // no lock: proper-lockfile takes it
  if (!entry.isDirectory()) return { token: undefined, mtimeMs: entry.mtimeMs, ino: entry.ino };
  const holder = await readHolder(lockPath);
  const seen = { token: holder?.token, mtimeMs: entry.mtimeMs, ino: entry.ino };
  if (Math.abs(Date.now() - entry.mtimeMs) > staleMs) return seen; // any holder, any host: it stopped refreshing
  if (holder && canCheckPid(holder) && isGone(holder)) return seen;
  return undefined;
}

/**
 * Removes the lock when it is dead (see `deadLock`); the only way a lock is ever taken over.
 * Reclaimers take a guard folder first and check under it that the lock is still the same dead
 * one (same token, same mtime), so two waiters never both remove a lock (the second would remove
 * the first one's fresh lock). The lock folder goes with everything in it, the old holder's
 * staged writes (its fence) included: see `FileLock.fence()`.
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
