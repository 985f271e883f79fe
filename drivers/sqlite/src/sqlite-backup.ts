import { chmodSync, closeSync, fsyncSync, openSync, renameSync, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { errors } from "./sqlite-errors.js";
import { createExclusive } from "./sqlite-store-file.js";

/*
 * Backups are whole database files beside the store. Each is made as a temp file (created
 * exclusively, 0600), checked, fsynced and renamed into place, so a crash at any moment leaves
 * the last good backup, or the new one, never half of one.
 */

/**
 * Copies the open database to `target`: a self-contained file (no -wal beside it) that passed
 * SQLite's integrity check. Until it has, the previous backup at `target` stays.
 */
export async function writeBackup(db: Database.Database, target: string): Promise<void> {
  const temp = `${target}.tmp-${process.pid}-${Date.now()}`;
  let created = false;
  try {
    createExclusive(temp);
    created = true;
    await db.backup(temp);
    const copy = new Database(temp);
    try {
      copy.pragma("journal_mode = DELETE");
      const check = copy.pragma("quick_check", { simple: true });
      if (check !== "ok") throw errors.corrupt(`the database fails its integrity check (${String(check)}); the last backup was kept`);
    } finally {
      copy.close();
    }
    chmodSync(temp, 0o600);
    syncFile(temp);
    renameSync(temp, target);
    syncDir(dirname(target));
  } catch (error) {
    removeTemp(created, temp);
    throw error;
  }
}

/**
 * Copies the backup at `source` to a temp file beside `path`, checked and fsynced, and returns
 * the temp file. Nothing at `path` is touched: with no usable backup it throws `CorruptDataError`
 * and the store is as it was.
 */
export async function stageBackup(source: string, path: string): Promise<string> {
  const temp = `${path}.restore-${process.pid}-${Date.now()}`;
  let created = false;
  try {
    statSync(source);
    const backup = new Database(source, { readonly: true, fileMustExist: true });
    try {
      const check = backup.pragma("quick_check", { simple: true });
      if (check !== "ok") throw new Error(`integrity check: ${String(check)}`);
      createExclusive(temp);
      created = true;
      await backup.backup(temp);
    } finally {
      backup.close();
    }
    chmodSync(temp, 0o600);
    syncFile(temp);
    return temp;
  } catch (error) {
    removeTemp(created, temp);
    throw errors.corrupt(`there is no usable backup at ${source}: ${(error as Error).message}`, error);
  }
}

/**
 * Moves the database at `path` aside (with its -wal and -shm, which belong to it and must never
 * be applied to the backup) and renames `staged` into its place. The connection must be closed.
 * Returns where the old file went, or undefined when there was none.
 */
export function swapIn(staged: string, path: string): string | undefined {
  const movedTo = `${path}.aside-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  let moved = false;
  for (const suffix of ["-wal", "-shm", ""]) {
    try {
      renameSync(`${path}${suffix}`, `${movedTo}${suffix}`);
      if (suffix === "") moved = true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
  renameSync(staged, path);
  syncDir(dirname(path));
  return moved ? movedTo : undefined;
}

/** Removes our own unfinished copy (never the store). */
function removeTemp(created: boolean, temp: string): void {
  try {
    if (created) unlinkSync(temp);
  } catch {}
}

function syncFile(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function syncDir(path: string): void {
  try {
    syncFile(path);
  } catch {
    // Some platforms cannot fsync a folder; the rename is still atomic.
  }
}
