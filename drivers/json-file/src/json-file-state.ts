import { promises as fs } from "node:fs";
import { fileTypeOf, type Mutex } from "@taskstore/core";
import { inspectFile } from "./json-file-atomic.js";
import { errors, io, notRegular } from "./json-file-errors.js";
import { type FileLock, LockLostError } from "./json-file-lock.js";
import type { Settings } from "./json-file-options.js";
import type { StoreNames } from "./json-file-side-files.js";
import type { View } from "./json-file-view.js";

/**
 * What the driver's parts share, passed to each of them: the files, the settings, the lock, and
 * the view of the store with the bookkeeping around it. One per driver instance.
 */
export interface DriverState {
  /** The store file as configured (a symlink stays a symlink: writes go through to its target). */
  readonly path: string;
  readonly backupPath: string;
  readonly lockPath: string;
  readonly journalPath: string;
  readonly names: StoreNames;
  readonly settings: Settings;
  readonly lock: FileLock;
  /** Every step that reads or changes the view takes its turn here. */
  readonly turn: Mutex;
  view: View | undefined;
  wroteOnce: boolean;
  /** When the backup was last written or seen (its mtime), by this instance: -Infinity until then. */
  backupSeenAt: number;
  /** The lock was taken through `acquireLock()` (the protocol of the six required methods): they then run under it. */
  externalHold: boolean;
  /** Bytes read from the files, for `describe()` (and the tests: a reader reads only what is new). */
  readonly bytesRead: { snapshot: number; journal: number };
  /** A problem no caller is waiting for: to core's `storage:warning`, or a process warning without core. */
  warn(warning: Error): void;
}

/** For writeFileAtomic: the write stands, but its folder could not be synced. */
export function onUnsyncedFolder(state: DriverState, what: string): (error: Error) => void {
  return (error) =>
    state.warn(
      errors.unavailable(
        `${what} was written, but its folder could not be synced (${error.message}); a power cut may still undo it`,
        error,
      ),
    );
}

/** Another process may have written since the lock was lost: writing now could overwrite its changes. */
export function refuseIfLockLost(state: DriverState): void {
  if (!state.lock.held) throw new LockLostError(state.lockPath);
}

/**
 * The store and its backup must be regular files (or missing), and so must the journal (which
 * is never a symlink): a FIFO, a device, a folder is refused before anything is made beside it.
 */
export async function refuseIrregularFiles(state: DriverState): Promise<void> {
  for (const file of [state.path, state.backupPath]) {
    const seen = await io("inspect the store path", () => inspectFile(file, Number.MAX_SAFE_INTEGER));
    if (seen.kind === "not-regular") throw notRegular(file, seen.type);
  }
  const journal = await fs.lstat(state.journalPath).catch(() => undefined);
  if (journal && !journal.isFile()) throw notRegular(state.journalPath, fileTypeOf(journal));
}
