import { randomBytes } from "node:crypto";
import { constants, promises as fs } from "node:fs";
import path from "node:path";

/** Mode of every file the driver writes, whatever the umask. */
export const FILE_MODE = 0o600;
/** Mode of every folder the driver creates, whatever the umask. */
export const DIR_MODE = 0o700;

const isWindows = process.platform === "win32";

/**
 * Replaces `target` with `data` so that a reader, or a crash at any moment, sees either the old
 * content or the new one, and the new one survives a power cut once this resolves: a unique temp
 * file created exclusively beside the target, written, fsynced, renamed over the target, and the
 * folder fsynced (the rename itself is only durable then).
 *
 * Once the rename is done the new content is in place, and nothing after it fails the call: a
 * write reported as failed would be applied again by its caller (a log line twice). A folder
 * fsync that fails then is passed to `onUnsyncedFolder` instead (the write stands, but a power
 * cut may still undo it), as SQLite also lets a failed directory sync pass.
 */
export async function writeFileAtomic(target: string, data: Buffer, onUnsyncedFolder: (error: Error) => void): Promise<void> {
  const temp = tempPathFor(target);
  const handle = await fs.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
  try {
    // The creation mode is cut by the umask; chmod makes it exactly 0600 either way.
    await handle.chmod(FILE_MODE);
    for (let offset = 0; offset < data.length; ) offset += (await handle.write(data, offset, data.length - offset)).bytesWritten;
    await handle.sync();
    await renameWithRetry(temp, target);
  } catch (error) {
    await handle.close().catch(() => undefined);
    await fs.rm(temp, { force: true }).catch(() => undefined);
    throw error;
  }
  await handle.close().catch(() => undefined);
  try {
    await fsyncDir(path.dirname(target));
  } catch (error) {
    onUnsyncedFolder(error as Error);
  }
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
      await new Promise((resolve) => setTimeout(resolve, delay));
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
