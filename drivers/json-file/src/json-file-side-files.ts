import { promises as fs } from "node:fs";
import path from "node:path";
import { codeOf, type Fence, readRegularFile, tempPattern, writeFileAtomic } from "./json-file-atomic.js";
import { isAlive, lockLeftoverPattern } from "./json-file-lock.js";

// The files the driver keeps beside the store, other than the store, its backup and its lock.

/** Files at least this old whose writer process is gone are removed as leftovers of a crash. */
const LEFTOVER_AGE_MS = 10_000;

/** `tasks.json` split for naming its siblings: `/dir`, `tasks`, `.json`. */
export interface StoreNames {
  dir: string;
  stem: string;
  ext: string;
}

export function namesOf(file: string): StoreNames {
  const ext = path.extname(file);
  return { dir: path.dirname(file), stem: path.basename(file, ext), ext: ext || ".json" };
}

/** A legacy todo file is kept for good as `tasks.legacy.json` (then `tasks.legacy-<time>.json`) before it is migrated. */
export async function keepLegacy(names: StoreNames, bytes: Buffer, onUnsyncedFolder: (error: Error) => void, fence?: Fence): Promise<void> {
  for (const name of [`${names.stem}.legacy${names.ext}`, `${names.stem}.legacy-${stamp()}${names.ext}`]) {
    const file = path.join(names.dir, name);
    // Never opened unless it is a regular file (a FIFO there would block the read for good).
    const existing = await readRegularFile(file);
    if (existing.kind === "file" && existing.bytes.equals(bytes)) return;
    if (existing.kind === "missing") {
      await writeFileAtomic(file, bytes, onUnsyncedFolder, fence);
      return;
    }
  }
}

/**
 * Keeps the file at `target` as `tasks.corrupt-<time>.json` (the journal: `tasks.journal.corrupt-<time>.jsonl`),
 * a hard link, or a copy where links fail; returns its path.
 */
export async function moveAside(names: StoreNames, target: string, what = "corrupt", ext = names.ext): Promise<string> {
  for (let n = 0; ; n++) {
    const aside = path.join(names.dir, `${names.stem}.${what}-${stamp()}${n ? `-${n}` : ""}${ext}`);
    try {
      // A link, not a rename: the store path never goes missing, even after a crash right here.
      await fs.link(target, aside);
      return aside;
    } catch (error) {
      if (codeOf(error) === "EEXIST") continue;
      if (!["EPERM", "ENOTSUP", "EXDEV", "EMLINK"].includes(codeOf(error) ?? "")) throw error;
    }
    try {
      await fs.copyFile(target, aside, fs.constants.COPYFILE_EXCL);
      await fs.chmod(aside, 0o600);
      return aside;
    } catch (error) {
      if (codeOf(error) !== "EEXIST") throw error;
    }
  }
}

/**
 * Removes what a crashed process left behind: temp files of the store, lock folders being built
 * or removed. Only those of processes gone from this host and older than a few seconds (a
 * young one may be another host's, on a shared folder).
 */
export async function removeLeftovers(file: string, lockPath: string): Promise<void> {
  const patterns = [tempPattern(path.basename(file)), lockLeftoverPattern(path.basename(lockPath))];
  const dir = path.dirname(file);
  const entries = await fs.readdir(dir).catch(() => [] as string[]);
  for (const name of entries) {
    const pid = Number(patterns.map((pattern) => pattern.exec(name)?.[1]).find(Boolean));
    if (!pid || isAlive(pid)) continue;
    const leftover = path.join(dir, name);
    const stat = await fs.stat(leftover).catch(() => undefined);
    if (stat && Date.now() - stat.mtimeMs > LEFTOVER_AGE_MS) await fs.rm(leftover, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** A timestamp for file names: `2026-11-24T23-38-20-123Z`. */
function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, "-");
}
