import { randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import { CorruptDataError, emptyStore, isLoadableStore, type RestoreResult, TaskStoreError } from "@taskstore/core";
import { removeJournal, sealQuietly } from "./json-file-append.js";
import {
  type FileContent,
  type FileKind,
  inspectFile,
  isSymlink,
  READ_LIMIT_BYTES,
  readRegularFile,
  resolveTarget,
  writeFileAtomic,
} from "./json-file-atomic.js";
import { errors, io, notRegular } from "./json-file-errors.js";
import { JournalFile } from "./json-file-journal.js";
import { emptyScan, type Marker, markerOf, scanJournal, sealSnapshot } from "./json-file-journal-format.js";
import { LockLostError } from "./json-file-lock.js";
import { keepLegacy, moveAside } from "./json-file-side-files.js";
import { type DriverState, onUnsyncedFolder, refuseIfLockLost } from "./json-file-state.js";
import { looksLikeStore, parseStore } from "./json-file-store-format.js";
import { dataOf, writerOf } from "./json-file-table.js";
import { closeView, current, lastSeq, type View, type Writer } from "./json-file-view.js";

// Backups (`backup()` and the automatic one before writes) and `restore()`.

/** `backup()`, under the lock. A store that does not load is never copied over a good backup. */
export async function backupLocked(state: DriverState): Promise<void> {
  const view = await current(state);
  if (!view.snapshot.bytes) {
    await io("write the backup", () =>
      writeFileAtomic(
        state.backupPath,
        Buffer.from(JSON.stringify(emptyStore())),
        onUnsyncedFolder(state, state.backupPath),
        state.lock.asFence,
      ),
    );
    return;
  }
  const data = dataOf(state.path, view);
  if (!isLoadableStore(data)) throw errors.corrupt(`${state.path} fails the schema; the backup was left as it was`);
  if (Array.isArray(data)) {
    const text = view.snapshot.bytes;
    await io("keep the legacy file", () =>
      keepLegacy(state.names, text, onUnsyncedFolder(state, "the legacy copy of the store"), state.lock.asFence),
    );
    await io("write the backup", () =>
      writeFileAtomic(state.backupPath, text, onUnsyncedFolder(state, state.backupPath), state.lock.asFence),
    );
    return;
  }
  await writeBackup(state, view, () => Buffer.from(JSON.stringify(data)));
}

/**
 * The store as the view has it, to `tasks.backup.json`: `tasks.json`'s bytes when the journal
 * adds nothing, else encoded; sealed with a marker of its own, which no journal continues (so a
 * restored backup is exactly the store it was).
 */
async function writeBackup(state: DriverState, view: View, encode: () => Buffer): Promise<void> {
  const body = view.records.length === 0 && view.snapshot.bytes ? withoutMarker(view.snapshot.bytes) : undefined;
  const bytes = sealSnapshot(body ?? encode(), { id: randomUUID(), seq: lastSeq(view) });
  await io("write the backup", () =>
    writeFileAtomic(state.backupPath, bytes, onUnsyncedFolder(state, state.backupPath), state.lock.asFence),
  );
  state.backupSeenAt = Date.now();
}

/**
 * Before a write, a copy of the store as it is (before the write) to the backup: on this
 * instance's first write, then at most every `backupIntervalMs` (the backup file's age decides,
 * across processes). Only a store that loads is copied: the view's table was built and checked.
 * `applied`: the view's table already holds the write about to be made, so only `tasks.json`'s
 * bytes (when the journal adds nothing to them) can stand for the store before it.
 */
export async function autoBackup(state: DriverState, view: View, applied = false, append = false): Promise<void> {
  if (!view.snapshot.bytes) return;
  const { backupIntervalMs } = state.settings;
  if (state.wroteOnce) {
    // Before an append, the backup's age as this instance last saw it stands until the interval
    // could have passed (no stat per record); before a new tasks.json, the file says.
    if (append && Date.now() - state.backupSeenAt < backupIntervalMs) return;
    const stat = await fs.stat(state.backupPath).catch(() => undefined);
    if (stat) state.backupSeenAt = stat.mtimeMs;
    if (stat && Date.now() - stat.mtimeMs < backupIntervalMs) return;
  }
  if (applied && view.records.length > 0) return;
  let writer: Writer;
  try {
    writer = writerOf(state.path, view);
  } catch (error) {
    // A store that does not load (or a legacy file, which core backs up itself) is not copied over a good backup.
    if (TaskStoreError.hasCode(error, "CORRUPT_DATA")) return;
    throw error;
  }
  await writeBackup(state, view, () => writer.bytes.encode(writer.table, view.lastUpdated));
}

/** `restore()`, under the lock: every check (see `restore()`) comes before anything is moved or written. */
export async function restoreLocked(state: DriverState): Promise<RestoreResult> {
  const text = await readBackup(state);
  refuseIfLockLost(state);
  const link = await io("inspect the store path", () => isSymlink(state.path));
  const target = await io("resolve the store path", () => resolveTarget(state.path));
  // Through a link the target is read, to tell a store from some other file; else its kind is enough.
  const read: FileContent | undefined = link ? await io("read the store", () => readRegularFile(target)) : undefined;
  const found: FileKind = read ?? (await io("inspect the store", () => inspectFile(target)));
  if (found.kind === "not-regular") throw notRegular(state.path, found.type);
  if (found.kind === "too-large") {
    throw errors.corrupt(
      `${state.path} is ${found.size} bytes, more than this driver can read (${READ_LIMIT_BYTES}); the backup was not restored over it, and nothing was changed`,
    );
  }
  if (link && !(read?.kind === "file" && looksLikeStore(read.bytes))) {
    throw errors.corrupt(
      `${state.path} is a symlink to ${target}, which ${found.kind === "missing" ? "does not exist" : "does not look like a taskstore store"}; a backup is never restored through it (nothing was changed)`,
    );
  }
  // The journal is sealed where it can be (in restoreSnapshot), so nothing appended to it from now on counts.
  let view: View | undefined;
  try {
    view = await current(state);
  } catch (error) {
    if (error instanceof LockLostError) throw error;
    view = undefined;
  }
  let movedTo: string | undefined;
  if (found.kind !== "missing") movedTo = await io("move the store aside", () => moveAside(state.names, target));
  const journal = await fs.lstat(state.journalPath).catch(() => undefined);
  if (journal?.isFile()) await io("move the journal aside", () => moveAside(state.names, state.journalPath, "journal.corrupt", ".jsonl"));
  await restoreSnapshot(state, view, text);
  return { ...(movedTo ? { movedTo } : {}), restoredFrom: state.backupPath };
}

/**
 * Puts the backup's bytes in place of `tasks.json`, as they are: a backup's marker is its own,
 * so no journal continues it. Should the journal there carry its marker all the same (a backup
 * restored before, and written to since), the backup is sealed anew with a marker of its own.
 */
async function restoreSnapshot(state: DriverState, view: View | undefined, backup: Buffer): Promise<void> {
  const id = randomUUID();
  if (view?.journal) await sealQuietly(state, view, id);
  const marker = markerOf(parseStore(backup, state.backupPath));
  const header = view ? view.journal?.scan.header : await journalHeader(state.journalPath);
  const bytes = marker && header && header.id === marker.id ? sealSnapshot(withoutMarker(backup), { id, seq: marker.seq }) : backup;
  const target = await io("resolve the store path", () => resolveTarget(state.path));
  await io("restore the backup", () => writeFileAtomic(target, bytes, onUnsyncedFolder(state, target), state.lock.asFence));
  // Written: the next look reads it (and its marker) again.
  const old = state.view;
  state.view = undefined;
  await closeView(old);
  if (view && view !== old) await closeView(view);
  await removeJournal(state);
}

/** The header of the journal there, read without the view (which could not be read). */
async function journalHeader(journalPath: string): Promise<Marker | undefined> {
  const opened = await JournalFile.open(journalPath).catch(() => undefined);
  if (!(opened instanceof JournalFile)) return undefined;
  try {
    const scan = emptyScan();
    const bytes = await opened.read(0, Math.min(await opened.size(), 4096));
    const nl = bytes.indexOf(0x0a);
    if (nl >= 0) scanJournal(scan, bytes.subarray(0, nl + 1), () => undefined);
    return scan.header;
  } catch {
    return undefined;
  } finally {
    await opened.close();
  }
}

/** The backup's bytes when it is a regular file that parses as a loadable store, else `CORRUPT_DATA`. */
async function readBackup(state: DriverState): Promise<Buffer> {
  const { backupPath } = state;
  let found: FileContent;
  try {
    found = await readRegularFile(backupPath);
  } catch (error) {
    throw errors.corrupt(`there is no usable backup at ${backupPath}: ${(error as Error).message}`, error);
  }
  if (found.kind !== "file") {
    const why =
      found.kind === "missing" ? "it does not exist" : found.kind === "too-large" ? `it is ${found.size} bytes` : `it is ${found.type}`;
    throw errors.corrupt(`there is no usable backup at ${backupPath} (${why})`);
  }
  try {
    const parsed = parseStore(found.bytes, backupPath) as unknown as Record<string, unknown>;
    if (!Array.isArray(parsed)) delete parsed.journal;
    if (!isLoadableStore(parsed)) throw new Error(`${backupPath} fails the schema`);
  } catch (error) {
    if (error instanceof CorruptDataError) throw error;
    throw errors.corrupt(`there is no usable backup at ${backupPath}`, error);
  }
  return found.bytes;
}

/** A snapshot's bytes without the marker this driver adds at its end (the bytes as they are when there is none). */
function withoutMarker(bytes: Buffer): Buffer {
  const tail = bytes.toString("latin1", Math.max(0, bytes.length - 160));
  const found = /,?"journal":\{"id":"[0-9a-f-]{8,64}","seq":\d{1,16},"checksum":"[0-9a-f]{8}"\}\}$/.exec(tail);
  if (!found) return bytes;
  const cut = bytes.length - (tail.length - found.index);
  return Buffer.concat([bytes.subarray(0, cut), Buffer.from("}")]);
}
