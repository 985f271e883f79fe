import { constants as bufferConstants } from "node:buffer";
import { randomBytes } from "node:crypto";
import { type BigIntStats, constants, promises as fs, type Stats } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import { fileTypeOf, sleep } from "@taskstore/core";

/** Mode of every file the driver writes, whatever the umask. */
export const FILE_MODE = 0o600;
/** Mode of every folder the driver creates, whatever the umask. */
export const DIR_MODE = 0o700;

const isWindows = process.platform === "win32";

/**
 * The largest file the driver reads: V8's longest string, counted in bytes (UTF-8 never decodes
 * to more UTF-16 units than it has bytes). A longer file cannot be turned into text to parse.
 */
export const READ_LIMIT_BYTES: number = bufferConstants.MAX_STRING_LENGTH;

/** What is at a path, as `readRegularFile` and `inspectFile` see it (symlinks followed). */
export type FileContent =
  | { kind: "missing" }
  | { kind: "file"; size: number; bytes: Buffer }
  | { kind: "not-regular"; type: string }
  | { kind: "too-large"; size: number };

export type FileKind = Exclude<FileContent, { kind: "file" }> | { kind: "file"; size: number };

/**
 * What is at `file` (following symlinks), without opening it: a FIFO or a device is never opened
 * (opening a FIFO blocks until a writer comes, reading /dev/zero never ends).
 */
export async function inspectFile(file: string, limit: number = READ_LIMIT_BYTES): Promise<FileKind> {
  let stat: Stats;
  try {
    stat = await fs.stat(file);
  } catch (error) {
    if (codeOf(error) === "ENOENT") return { kind: "missing" };
    throw error;
  }
  if (!stat.isFile()) return { kind: "not-regular", type: fileTypeOf(stat) };
  if (stat.size > limit) return { kind: "too-large", size: stat.size };
  return { kind: "file", size: stat.size };
}

/**
 * Reads `file` (following symlinks) only when it is a regular file of at most `limit` bytes. It
 * is checked before it is opened, and opened non-blocking and checked again (a FIFO swapped in
 * between would otherwise block the open), so a FIFO or a device is never read.
 */
export async function readRegularFile(file: string, limit: number = READ_LIMIT_BYTES): Promise<FileContent> {
  const found = await readRegularFileKept(file, limit);
  if (found.kind !== "file") return found;
  await found.handle.close().catch(() => undefined);
  return { kind: "file", size: found.size, bytes: found.bytes };
}

/** What `readRegularFileKept` found: `readRegularFile`'s answer, a file's with its handle (still open) and stat. */
export type KeptContent =
  | Exclude<FileContent, { kind: "file" }>
  | { kind: "file"; size: number; bytes: Buffer; handle: FileHandle; stat: BigIntStats };

/**
 * `readRegularFile`, keeping the file open: the handle pins the inode (no later file can get its
 * number while it is open), and the stat is the one of the bytes read.
 */
export async function readRegularFileKept(file: string, limit: number = READ_LIMIT_BYTES): Promise<KeptContent> {
  const seen = await inspectFile(file, limit);
  if (seen.kind !== "file") return seen;
  let handle: FileHandle;
  try {
    handle = await fs.open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0));
  } catch (error) {
    if (codeOf(error) === "ENOENT") return { kind: "missing" };
    throw error;
  }
  let kept = false;
  try {
    const stat = await handle.stat({ bigint: true });
    if (!stat.isFile()) return { kind: "not-regular", type: fileTypeOf(stat) };
    if (stat.size > BigInt(limit)) return { kind: "too-large", size: Number(stat.size) };
    const bytes = await readAt(handle, Number(stat.size));
    if (bytes.length > limit) return { kind: "too-large", size: bytes.length };
    kept = true;
    return { kind: "file", size: bytes.length, bytes, handle, stat };
  } finally {
    if (!kept) await handle.close().catch(() => undefined);
  }
}

/** Reads a file from its start through `handle`: `size` bytes as stat said, and whatever more is there by the time it is read. */
async function readAt(handle: FileHandle, size: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  let position = 0;
  for (let want = Math.max(size, 64 * 1024); ; want = 64 * 1024) {
    const buffer = Buffer.allocUnsafe(want);
    let filled = 0;
    while (filled < want) {
      const { bytesRead } = await handle.read(buffer, filled, want - filled, position);
      if (bytesRead === 0) break;
      filled += bytesRead;
      position += bytesRead;
    }
    chunks.push(filled === want ? buffer : buffer.subarray(0, filled));
    total += filled;
    if (filled < want) break;
  }
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total);
}

/** Whether `file` itself (not what it points to) is a symbolic link. */
export async function isSymlink(file: string): Promise<boolean> {
  try {
    return (await fs.lstat(file)).isSymbolicLink();
  } catch (error) {
    if (codeOf(error) === "ENOENT") return false;
    throw error;
  }
}

/**
 * Where a write may stage its temp file so that it can only be published while the lock is held
 * (see `FileLock.fence()`): a folder inside the holder's lock folder. A takeover removes it, so
 * the rename that would publish a resumed holder's write finds no temp file and fails.
 */
export interface Fence {
  /** The staging folder; throws `LockLostError` when the lock is lost. */
  stage(): Promise<string>;
  /** Throws `LockLostError` unless the lock is still this holder's (the fallback's check, right before its rename). */
  verify(): Promise<void>;
  /** The error of a fenced step, as `LockLostError` when it failed because the staging folder is gone. */
  explain(error: unknown): Promise<unknown>;
}

/** Target folders on another file system than the lock (a symlinked store): staged beside the target instead. */
const crossDevice = new Set<string>();

/**
 * Replaces `target` with `data` so that a reader, or a crash at any moment, sees either the old
 * content or the new one, and the new one survives a power cut once this resolves: a unique temp
 * file created exclusively (in the lock's `fence`, when given, else beside the target), written,
 * fsynced, renamed over the target, and the folder fsynced (the rename itself is only durable
 * then).
 *
 * With a fence, the rename is the write's commit point and it only succeeds while the lock is
 * held: a holder that stalls anywhere in here and is taken over finds its temp file gone. Where
 * the target is on another file system than the lock folder (a symlinked store pointing
 * elsewhere), the temp file goes beside the target and the lock is checked right before the
 * rename instead; a stall of more than the stale period between that check and the rename is
 * the one case the fence does not cover.
 *
 * Once the rename is done the new content is in place, and nothing after it fails the call: a
 * write reported as failed would be applied again by its caller (a log line twice). A folder
 * fsync that fails then is passed to `onUnsyncedFolder` instead (the write stands, but a power
 * cut may still undo it), as SQLite also lets a failed directory sync pass.
 */
export async function writeFileAtomic(
  target: string,
  data: Buffer,
  onUnsyncedFolder: (error: Error) => void,
  fence?: Fence,
): Promise<void> {
  await (await writeFileAtomicKept(target, data, onUnsyncedFolder, fence)).close().catch(() => undefined);
}

/** `writeFileAtomic`, handing back a handle of the new file (open for reading), which pins its inode. */
export async function writeFileAtomicKept(
  target: string,
  data: Buffer,
  onUnsyncedFolder: (error: Error) => void,
  fence?: Fence,
): Promise<FileHandle> {
  const dir = path.dirname(target);
  let handle: FileHandle;
  if (fence && !crossDevice.has(dir)) {
    const temp = path.join(await fence.stage(), path.basename(tempPathFor(target)));
    try {
      handle = await writeAndRename(temp, target, data);
    } catch (error) {
      if (codeOf(error) !== "EXDEV") throw await fence.explain(error);
      crossDevice.add(dir);
      return writeFileAtomicKept(target, data, onUnsyncedFolder, fence);
    }
  } else {
    handle = await writeAndRename(tempPathFor(target), target, data, fence);
  }
  try {
    await fsyncDir(dir);
  } catch (error) {
    onUnsyncedFolder(error as Error);
  }
  return handle;
}

async function writeAndRename(temp: string, target: string, data: Buffer, check?: Fence): Promise<FileHandle> {
  const handle = await fs.open(temp, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
  try {
    // The creation mode is cut by the umask; chmod makes it exactly 0600 either way.
    await handle.chmod(FILE_MODE);
    for (let offset = 0; offset < data.length; ) offset += (await handle.write(data, offset, data.length - offset)).bytesWritten;
    await handle.sync();
    await check?.verify();
    await renameWithRetry(temp, target);
  } catch (error) {
    await handle.close().catch(() => undefined);
    await fs.rm(temp, { force: true }).catch(() => undefined);
    throw error;
  }
  return handle;
}

/** Whether a file is at `file` now (following symlinks). */
export async function fileExists(file: string): Promise<boolean> {
  try {
    await fs.stat(file);
    return true;
  } catch (error) {
    if (codeOf(error) === "ENOENT") return false;
    throw error;
  }
}

/** `tasks.json.<pid>-<random>.tmp` beside the target: unique, and the pid tells whose it is. */
export function tempPathFor(target: string): string {
  return `${target}.${process.pid}-${randomBytes(6).toString("hex")}.tmp`;
}

/** Matches temp files of `tasks.json` and captures the pid that made them. */
export function tempPattern(basename: string): RegExp {
  return new RegExp(`^${basename.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\.(\\d+)-[0-9a-f]{12}\\.tmp$`);
}

/** Makes the folder durable after a rename in it. Windows cannot open a folder for fsync, and does not need to. */
export async function fsyncDir(dir: string): Promise<void> {
  if (isWindows) return;
  const handle = await fs.open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } catch (error) {
    // Some file systems refuse fsync on a folder; the rename is then as durable as they make it.
    if (!["EINVAL", "ENOTSUP", "EISDIR"].includes(codeOf(error) ?? "")) throw error;
  } finally {
    await handle.close();
  }
}

/**
 * On Windows a rename over a file that another process (an antivirus, an indexer, a reader) has
 * open fails with EPERM/EBUSY/EACCES for a moment: retry for up to about a second, as npm does.
 */
async function renameWithRetry(from: string, to: string): Promise<void> {
  for (let delay = 5; ; delay *= 2) {
    try {
      await fs.rename(from, to);
      return;
    } catch (error) {
      if (!isWindows || !["EPERM", "EBUSY", "EACCES"].includes(codeOf(error) ?? "") || delay > 640) throw error;
      await sleep(delay);
    }
  }
}

/** Creates `dir` (and missing parents) as 0700 whatever the umask. Existing folders are left as they are. */
export async function ensureDir(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    try {
      await fs.stat(current);
      break;
    } catch (error) {
      if (codeOf(error) !== "ENOENT" || path.dirname(current) === current) throw error;
      missing.unshift(current);
    }
  }
  for (const folder of missing) {
    try {
      await fs.mkdir(folder, { mode: DIR_MODE });
    } catch (error) {
      if (codeOf(error) !== "EEXIST") throw error;
      continue; // another process made it: leave its mode alone
    }
    await fs.chmod(folder, DIR_MODE);
  }
}

/**
 * The file that writes go to: `file` itself, or, when it is a symlink, its final target (a
 * dangling link's target too), so the link is written through and never replaced by a file.
 */
export async function resolveTarget(file: string): Promise<string> {
  let current = path.resolve(file);
  for (let hops = 0; hops < 40; hops++) {
    try {
      return await fs.realpath(current);
    } catch (error) {
      if (codeOf(error) !== "ENOENT") throw error;
    }
    let link: string;
    try {
      link = await fs.readlink(current);
    } catch (error) {
      // Not a link: a missing file. Resolve its folder so the temp file lands beside the real place.
      if (["EINVAL", "ENOENT", "UNKNOWN"].includes(codeOf(error) ?? "")) {
        const dir = await fs.realpath(path.dirname(current)).catch(() => path.dirname(current));
        return path.join(dir, path.basename(current));
      }
      throw error;
    }
    current = path.resolve(path.dirname(current), link);
  }
  throw Object.assign(new Error(`too many symbolic links at ${file}`), { code: "ELOOP" });
}

export function codeOf(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code;
}
