import { createHash, randomBytes } from "node:crypto";
import { chmod, link, mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import path from "node:path";

/*
 * The file operations of a backup chain. Every file is written whole to a temp file of its own
 * (created exclusively, 0600), synced, and then published by one rename (a point file, whose name
 * is new) or one link (a manifest, whose name must not exist yet: two writers cannot both publish
 * the same generation); then the folder is synced. So a SIGKILL or a power cut leaves either the
 * old files or the new ones, never a torn one, and a temp file at worst.
 */

/** Temp files (and orphaned point files, see `sweep`) a crash left behind go after this long. */
const LEFTOVER_AGE_MS = 60 * 60 * 1000;

/** Makes the folder (and missing parents) 0700 whatever the umask; an existing folder keeps its mode. */
export async function ensureFolder(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode: 0o700 });
  if (first === undefined) return;
  // Every folder mkdir made, from the first one down to `dir`.
  for (let at = dir; ; at = path.dirname(at)) {
    await chmod(at, 0o700);
    if (at === first || path.dirname(at) === at) break;
  }
}

export function sha256(bytes: string | Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function writeTemp(dir: string, bytes: string): Promise<string> {
  const temp = path.join(dir, `.tmp-${process.pid}-${randomBytes(6).toString("hex")}`);
  const handle = await open(temp, "wx", 0o600);
  try {
    await handle.chmod(0o600);
    await handle.writeFile(bytes);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  await handle.close();
  return temp;
}

/** Writes `file` (a name nothing else uses) atomically and durably. */
export async function writeNewFile(file: string, bytes: string): Promise<void> {
  await publish(file, bytes, false);
}

/**
 * Publishes `file` with `bytes` only if no file has that name yet: false when another writer
 * published it first. The commit point of a chain (see `IncrementalBackups.commit`).
 */
export function publishExclusive(file: string, bytes: string): Promise<boolean> {
  return publish(file, bytes, true);
}

/** A synced temp file put in place by a rename, or (`exclusive`) by a link that fails if `file` exists. */
async function publish(file: string, bytes: string, exclusive: boolean): Promise<boolean> {
  const dir = path.dirname(file);
  const temp = await writeTemp(dir, bytes);
  try {
    if (exclusive) await link(temp, file);
    else await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    if (exclusive && (error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
  if (exclusive) await unlink(temp).catch(() => undefined);
  await syncFolder(dir);
  return true;
}

/** Makes a folder's entries (a rename, a link, an unlink) durable. Windows cannot open a folder: skipped there. */
export async function syncFolder(dir: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(dir, "r");
    await handle.sync();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EISDIR" && code !== "EPERM" && code !== "EINVAL" && code !== "EBADF") throw error;
  } finally {
    await handle?.close();
  }
}

/** Removes files, ignoring those already gone, then syncs the folder. */
export async function removeFiles(dir: string, names: Iterable<string>): Promise<void> {
  let removed = false;
  for (const name of names) {
    try {
      await unlink(path.join(dir, name));
      removed = true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
  if (removed) await syncFolder(dir);
}

/** The folder's entry names; none when it does not exist. */
export async function listFolder(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

/**
 * Removes what crashed writers left: temp files, and point files no manifest lists (written, then
 * the writer died before its manifest was published), once they are an hour old. A writer that
 * is still running publishes long before that, so its files are never taken from it.
 */
export async function sweep(dir: string, names: string[], isListed: (name: string) => boolean, now: number): Promise<void> {
  const stale: string[] = [];
  for (const name of names) {
    const leftover = name.startsWith(".tmp-") || (name.endsWith(".json") && /^\d{8}T/.test(name) && !isListed(name));
    if (!leftover) continue;
    const info = await stat(path.join(dir, name)).catch(() => undefined);
    if (info && now - info.mtimeMs > LEFTOVER_AGE_MS) stale.push(name);
  }
  if (stale.length > 0) await removeFiles(dir, stale);
}
