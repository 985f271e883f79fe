import { randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { ConflictError, type WriteSet } from "@taskstore/core";
import { codeOf } from "./json-file-atomic.js";
import { errors, io, unavailable } from "./json-file-errors.js";
import { JournalFile } from "./json-file-journal.js";
import { emptyScan, encodeHeader, encodeRecord, type Marker, NO_WRITES, scanJournal, tornFrom } from "./json-file-journal-format.js";
import { LockLostError } from "./json-file-lock.js";
import { type DriverState, onUnsyncedFolder } from "./json-file-state.js";
import { type JournalView, readJournal, readJournalBytes, takeRecord, type View } from "./json-file-view.js";

// Writing to the journal: a record (or a seal) appended and synced, a new journal, its removal.

/** Another writer's record took the sequence this one was written for (it had lost its lock): the change set runs again. */
export class LostRace extends ConflictError {}

/**
 * Appends one record (or a seal) to `journal` and syncs it. The record counts once it is in the
 * file after the last valid record with the next sequence; that is checked after the append
 * (the file grew by exactly this record from where this instance had read it, or else the new
 * bytes are read). A record that lost to another writer's (this one's lock was taken over while
 * it stalled) is ignored by every reader, and the change set runs again. `bytes` may start with
 * a newline that ends a torn line before the record (`line`).
 */
export async function append(
  state: DriverState,
  view: View,
  journal: JournalView,
  line: Buffer,
  change: { writes: WriteSet; at: number } | undefined,
  bytes: Buffer = line,
): Promise<void> {
  const { file, scan } = journal;
  // Where this instance last read (or wrote) it to. Anything another writer appended since (only
  // a writer whose lock was taken over does, under the lock this one holds) shows after the append.
  const before = scan.seen;
  const clean = !scan.partial && scan.junkFrom === undefined && bytes === line;
  let failure: unknown;
  try {
    await file.append(bytes);
  } catch (error) {
    failure = error;
  }
  // The sync and the look at the file's size run side by side (both after the write).
  let unsynced: unknown;
  let after = -1;
  if (failure === undefined) {
    [unsynced, after] = await Promise.all([
      file.datasync().then(
        () => undefined,
        (error: unknown) => error ?? new Error("fdatasync failed"),
      ),
      clean ? file.size().catch(() => -1) : Promise.resolve(-1),
    ]);
  }
  if (after === before + line.length) {
    accept(view, journal, line, change);
  } else {
    // Find out from the file what happened: the record is in it and valid, or it is not.
    let valid: Buffer[];
    try {
      valid = readJournal(state, view, journal, await readJournalBytes(state, file, scan.scanned));
    } catch (error) {
      if (failure !== undefined) throw await unavailable(failure, "append to the journal");
      throw error;
    }
    if (!valid.some((found) => found.equals(line))) {
      if (failure !== undefined) throw await unavailable(failure, "append to the journal");
      throw new LostRace(errors.message("another writer's record took this one's place; the change set runs again"));
    }
    // In the file despite the error (all of it was written): it counts, so it is synced now.
    if (failure !== undefined) unsynced = await file.datasync().catch((error: unknown) => error ?? new Error("fdatasync failed"));
  }
  if (unsynced !== undefined) {
    // The record is in the file and other processes read it: reporting the write as failed
    // would have it written twice. Like a folder that cannot be synced, it is a warning.
    state.warn(
      errors.unavailable(
        `a record was appended to ${state.journalPath}, but it could not be synced (${(unsynced as Error).message}); a power cut may still undo it`,
        unsynced,
      ),
    );
  }
}

/** Takes this instance's own record, just appended where it expected, into the view. */
function accept(view: View, journal: JournalView, line: Buffer, change: { writes: WriteSet; at: number } | undefined): void {
  const { scan } = journal;
  scan.seq++;
  scan.scanned += line.length;
  scan.validEnd = scan.scanned;
  scan.seen = scan.scanned;
  if (!change || journal !== view.journal || !view.matches) return;
  scan.records++;
  takeRecord(view, change.writes, change.at, line.length);
}

/** The journal continuing the view's snapshot: the one there, or a new one (linked into place, or renamed over one that does not continue it). */
export async function journalFor(state: DriverState, view: View): Promise<JournalView> {
  const marker = view.snapshot.marker as Marker;
  if (view.journal && view.matches) return view.journal;
  const stale = view.journal;
  if (stale) await sealQuietly(state, view, marker.id);
  const header = encodeHeader(marker, Date.now());
  const stage = await state.lock.fence();
  let file: JournalFile;
  try {
    file = await io("create the journal", () =>
      JournalFile.create(state.journalPath, stage, header, stale !== undefined, onUnsyncedFolder(state, state.journalPath)),
    );
  } catch (error) {
    if (codeOf(error) === "EEXIST") throw new LostRace(errors.message("another writer created the journal; the change set runs again"));
    throw await state.lock.explain(error);
  }
  await stale?.file.close();
  const scan = emptyScan();
  scanJournal(scan, header, () => undefined);
  scan.seen = header.length;
  view.journal = { file, scan };
  view.matches = true;
  view.records = [];
  view.recordBytes = 0;
  return view.journal;
}

/** Appends a seal to the view's journal (nothing valid can follow it), when it has a header and is not damaged or sealed already. */
async function seal(state: DriverState, view: View, next: string): Promise<void> {
  const journal = view.journal;
  if (!journal?.scan.header || journal.scan.corrupt || journal.scan.sealed !== undefined) return;
  const torn = tornFrom(journal.scan);
  const line = encodeRecord({
    seq: journal.scan.seq + 1,
    at: Date.now(),
    writes: NO_WRITES,
    seal: next,
    ...(torn !== undefined ? { after: torn } : {}),
  });
  // After an incomplete line (a torn tail), a newline first ends it; the seal says it follows it.
  const bytes = journal.scan.partial ? Buffer.concat([Buffer.from("\n"), line]) : line;
  await append(state, view, journal, line, undefined, bytes);
  journal.scan.sealed = next;
}

/** Sealing an old journal before it is replaced: a best effort (a damaged or read-only one stays as it is, and is replaced anyway). */
export async function sealQuietly(state: DriverState, view: View, next: string): Promise<void> {
  try {
    await seal(state, view, next);
  } catch (error) {
    if (error instanceof LockLostError) throw error;
  }
}

/**
 * Removes the (sealed) journal after `tasks.json` was replaced, by renaming it into the lock's
 * fence (so only the holder can) and deleting it there. Never fails: a sealed journal left in
 * place continues no snapshot, and the next writer replaces it.
 */
export async function removeJournal(state: DriverState): Promise<void> {
  try {
    const stage = await state.lock.fence();
    const away = path.join(stage, `journal-${randomUUID().slice(0, 8)}.old`);
    await fs.rename(state.journalPath, away);
    await fs.unlink(away).catch(() => undefined);
  } catch {
    // no journal, or the lock lost: either way it stays as it is
  }
}
