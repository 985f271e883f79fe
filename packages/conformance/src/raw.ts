import { readdir, readFile } from "node:fs/promises";
import path from "node:path";

/**
 * Every regular file's bytes under `dir` (recursively), one after the other: a `readRaw()` for a
 * driver that keeps its store in files (the store, its journal, backups, side files).
 */
export async function folderBytes(dir: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    parts.push(await readFile(path.join(entry.parentPath ?? (entry as { path?: string }).path ?? dir, entry.name)));
  }
  return Buffer.concat(parts);
}
