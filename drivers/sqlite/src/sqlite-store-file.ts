import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readSync,
  realpathSync,
  type Stats,
  statSync,
} from "node:fs";
import { dirname } from "node:path";
import { fileTypeOf, ValidationError } from "@taskstore/core";
import type Database from "better-sqlite3";
import { errors } from "./sqlite-errors.js";

/** The first 16 bytes of every SQLite 3 database file. */
const SQLITE_MAGIC = Buffer.from("SQLite format 3\0", "latin1");

/**
 * A path the driver was asked to use holds something that is not a SQLite store of this driver (a
 * text file, a folder, a device, a FIFO, a socket, a symlink to nothing, another program's SQLite
 * database), for the database or for its `.lock` file. Nothing was touched: no chmod, no side
 * file, no journal. `VALIDATION` (the path given is wrong, retrying cannot help), not
 * `CORRUPT_DATA`: a file that was never a store must not be "recovered" by moving it aside and
 * restoring a backup in its place.
 */
export class NotAStoreError extends ValidationError {
  /** The path that was refused. */
  readonly path: string;

  constructor(path: string, what: string) {
    super([{ path: ["path"], rule: "sqlite-store-file", message: `${path} ${what}` }], { subject: "sqlite" });
    this.message = errors.message(`${path} ${what}; it is not a taskstore SQLite store and was left untouched`);
    this.path = path;
  }
}

/** What is at a path the driver is about to use: nothing, an empty regular file, or a SQLite database file. */
export interface FileState {
  kind: "missing" | "empty" | "sqlite";
  /** For an existing file: its identity (after following symlinks). */
  dev?: number;
  ino?: number;
}

/**
 * Looks at `path` without changing anything (it is opened read-only and non-blocking, and only
 * when `stat` says it is a regular file, so a FIFO or a device is never opened). A symlink is
 * followed. Throws `NotAStoreError` unless it is missing, an empty regular file, or a regular file
 * that begins with the SQLite header. `role` names it in the error ("the store", "the lock file").
 */
export function inspectFile(path: string, role: string): FileState {
  let stats: Stats;
  try {
    stats = statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      if (isSymlink(path)) throw new NotAStoreError(path, `(${role}) is a symlink to a file that does not exist`);
      return { kind: "missing" };
    }
    if (code === "ENOTDIR") throw new NotAStoreError(path, `(${role}) is inside something that is not a folder`);
    if (code === "ELOOP") throw new NotAStoreError(path, `(${role}) is a loop of symlinks`);
    throw error;
  }
  if (!stats.isFile()) throw new NotAStoreError(path, `(${role}) is ${fileTypeOf(stats)}, not a regular file`);
  if (stats.size === 0) return { kind: "empty", dev: stats.dev, ino: stats.ino };
  const header = Buffer.alloc(SQLITE_MAGIC.length);
  // O_NONBLOCK: if the path was swapped for a FIFO since the stat, the open must not wait for a writer.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  let read: number;
  try {
    const opened = fstatSync(fd);
    if (!opened.isFile()) throw new NotAStoreError(path, `(${role}) is ${fileTypeOf(opened)}, not a regular file`);
    read = readSync(fd, header, 0, header.length, 0);
  } finally {
    closeSync(fd);
  }
  if (read < header.length || !header.equals(SQLITE_MAGIC)) {
    throw new NotAStoreError(path, `(${role}) is not a SQLite database (it does not begin with the SQLite header)`);
  }
  return { kind: "sqlite", dev: stats.dev, ino: stats.ino };
}

/**
 * `inspectFile`, and a missing file is created: its folder (0700) first, then the file itself,
 * exclusively and 0600 whatever the umask. Another process creating it at the same moment is fine
 * (then it is looked at again).
 */
export function prepareFile(path: string, role: string): FileState & { created: boolean } {
  for (let attempt = 0; ; attempt++) {
    const state = inspectFile(path, role);
    if (state.kind !== "missing") return { ...state, created: false };
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    let fd: number;
    try {
      fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST" && attempt < 3) continue;
      throw error;
    }
    try {
      fchmodSync(fd, 0o600);
      const { dev, ino } = fstatSync(fd);
      return { kind: "empty", dev, ino, created: true };
    } finally {
      closeSync(fd);
    }
  }
}

/** Creates `path` exclusively, 0600 whatever the umask (a temporary file of ours). */
export function createExclusive(path: string): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    fchmodSync(fd, 0o600);
  } finally {
    closeSync(fd);
  }
}

/**
 * SQLite keeps `-wal`, `-shm` and `-journal` beside the database file (beside a symlink's target:
 * it resolves links) and writes into them. One that is there already must be a plain file of its
 * own: not a symlink (SQLite would write through it), not a second hard link of another file, not
 * a FIFO, a device or a folder.
 */
export function checkSideFiles(path: string, role: string): void {
  const real = realpathSync(path);
  for (const suffix of ["-wal", "-shm", "-journal"]) {
    const side = `${real}${suffix}`;
    let stats: Stats;
    try {
      stats = lstatSync(side);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw error;
    }
    if (!stats.isFile()) throw new NotAStoreError(side, `(beside ${role}) is ${fileTypeOf(stats)}, not a regular file SQLite may write`);
    if (stats.nlink > 1)
      throw new NotAStoreError(side, `(beside ${role}) is one of ${stats.nlink} hard links to a file, which SQLite would write into`);
  }
}

/** Tables of SQLite's own (`sqlite_sequence`, `sqlite_stat1`...) are not the store's. */
function tablesOf(db: Database.Database): string[] {
  return db
    .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
    .pluck()
    .all() as string[];
}

/**
 * Refuses a SQLite database that is not a store of this driver, before anything is written to it
 * (the WAL switch and the chmod come after): one without a schema version that already has tables
 * of its own, or one whose schema version lacks the tables that version has. Reads only.
 */
export function checkStoreSchema(db: Database.Database, path: string, tablesAt: readonly (readonly string[])[]): void {
  const version = db.pragma("user_version", { simple: true }) as number;
  const tables = tablesOf(db);
  if (version === 0) {
    if (tables.length > 0) {
      throw new NotAStoreError(
        path,
        `is a SQLite database of another program (tables ${tables.join(", ")}, and no taskstore schema version)`,
      );
    }
    return;
  }
  const expected = tablesAt[version];
  if (!expected) return; // newer than this driver: refused as such when it is migrated
  const missing = expected.filter((name) => !tables.includes(name));
  if (missing.length > 0) {
    throw new NotAStoreError(
      path,
      `is a SQLite database of another program (user_version ${version}, but no ${missing.join(", ")} table${missing.length > 1 ? "s" : ""})`,
    );
  }
}

/** The lock file holds the `lock` table and nothing else. Reads only. */
export function checkLockSchema(db: Database.Database, path: string): void {
  const version = db.pragma("user_version", { simple: true }) as number;
  const others = tablesOf(db).filter((name) => name !== "lock");
  if (version !== 0 || others.length > 0) {
    throw new NotAStoreError(
      path,
      `(the lock file) is a SQLite database of another program${others.length > 0 ? ` (tables ${others.join(", ")})` : ""}`,
    );
  }
}

/** Tightens an existing file of ours to 0600 (never loosens it): tasks may hold private data. */
export function tighten(path: string): void {
  try {
    const { mode } = statSync(path);
    if ((mode & 0o077) !== 0) {
      const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
      try {
        // Through the descriptor, and only if it is still a regular file.
        if (fstatSync(fd).isFile()) fchmodSync(fd, mode & 0o700);
      } finally {
        closeSync(fd);
      }
    }
  } catch {}
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}
