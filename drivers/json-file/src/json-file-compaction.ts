import { randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import { TaskStoreError, type WriteSet } from "@taskstore/core";
import { LostRace, removeJournal, sealQuietly } from "./json-file-append.js";
import { isSymlink, readRegularFile, resolveTarget, writeFileAtomicKept } from "./json-file-atomic.js";
import { errors, io, notRegular, tooLarge } from "./json-file-errors.js";
import { type Marker, sealSnapshot, tornFrom } from "./json-file-journal-format.js";
import { LockLostError } from "./json-file-lock.js";
import { autoBackup } from "./json-file-recovery.js";
import { type DriverState, onUnsyncedFolder, refuseIfLockLost, refuseIrregularFiles } from "./json-file-state.js";
import { looksLikeStore } from "./json-file-store-format.js";
import { writerOf } from "./json-file-table.js";
import { catchUp, closeView, current, identityOf, lastSeq, storeBytes, type View } from "./json-file-view.js";

// A new `tasks.json`: the journal folded into it (compaction), `saveData()`'s whole store, and a
// change that cannot go into the journal (the first write, a torn or sealed journal, the size limit).

/** `tasks.json` must be written (not the journal): there is none yet, or no journal may continue it as it is. */
export function needsRewrite(view: View): boolean {
  if (!view.snapshot.bytes || !view.snapshot.marker) return true;
  const journal = view.journal;
  return !!journal && view.matches && (journal.scan.sealed !== undefined || tornFrom(journal.scan) !== undefined);
}

export function shouldCompact(state: DriverState, view: View): boolean {
  const journal = view.journal?.scan.seen ?? 0;
  const snapshot = view.snapshot.bytes?.length ?? 0;
  return view.matches && journal > state.settings.compactionBytes && journal > state.settings.compactionRatio * snapshot;
}

/**
 * Writes the view's store (with `change` applied) as a new `tasks.json`: the journal is sealed
 * first (so nothing appended to it later counts), the new file renamed into place, the journal
 * removed. A crash at any step leaves the old snapshot with the sealed journal (the same store)
 * or the new snapshot (the same store plus `change`), which a stale journal never continues.
 */
export async function rewrite(state: DriverState, view: View, change?: { writes: WriteSet; at: number }): Promise<void> {
  const { maxStoreBytes } = state.settings;
  const writer = writerOf(state.path, view);
  const at = change?.at ?? view.lastUpdated;
  // Near the limit, the store's exact size now (a store already over a lowered limit may still shrink).
  let currentBytes: number | undefined;
  if (change) {
    const estimate = JSON.stringify(change.writes).length;
    if (storeBytes(view) + estimate > maxStoreBytes) currentBytes = writer.bytes.encode(writer.table, view.lastUpdated).length;
    writer.bytes.forget(change.writes);
    writer.table.apply(change.writes);
  } else currentBytes = storeBytes(view);
  let body: Buffer;
  try {
    body = writer.bytes.encode(writer.table, at);
    if (body.length > maxStoreBytes && (currentBytes === undefined || body.length > currentBytes))
      throw tooLarge(body.length, maxStoreBytes, state.path);
  } catch (error) {
    view.writer = undefined; // the table holds a change that was not written
    throw error;
  }
  try {
    await autoBackup(state, view, change !== undefined);
    await replaceSnapshot(state, view, body, at);
  } catch (error) {
    view.writer = undefined;
    throw error;
  }
  (state.view as View).writer = writer;
  state.wroteOnce = true;
}

export async function compactQuietly(state: DriverState, view: View): Promise<void> {
  try {
    await rewrite(state, view);
  } catch (error) {
    // The write it follows is committed; the next writer compacts.
    if (error instanceof LockLostError || error instanceof LostRace) return;
    state.warn(errors.unavailable(`folding the journal into ${state.path} failed: ${(error as Error).message}`, error));
  }
}

/**
 * The new `tasks.json` from `body` (the store's JSON, without a marker), sealed with a new
 * marker; the old journal sealed before and removed after. The view becomes the new snapshot.
 */
async function replaceSnapshot(state: DriverState, view: View | undefined, body: Buffer, lastUpdated: number): Promise<void> {
  const id = randomUUID();
  if (view?.journal) await sealQuietly(state, view, id);
  const marker: Marker = { id, seq: view ? lastSeq(view) : 0 };
  const bytes = sealSnapshot(body, marker);
  const target = await io("resolve the store path", () => resolveTarget(state.path));
  const handle = await io("write the store", () => writeFileAtomicKept(target, bytes, onUnsyncedFolder(state, target), state.lock.asFence));
  // Written: nothing from here on fails the call (a write reported as failed is made again).
  const identity = await handle
    .stat({ bigint: true })
    .then(identityOf)
    .catch(() => undefined); // unknown: the next look reads the file again
  state.wroteOnce = true;
  const next: View = {
    snapshot: { handle, identity, bytes, marker, sealed: true },
    journal: undefined,
    matches: false,
    records: [],
    recordBytes: 0,
    lastUpdated,
    writer: undefined,
  };
  const old = state.view;
  state.view = next;
  await closeView(old);
  if (view && view !== old) await closeView(view);
  await removeJournal(state);
}

/** `saveData()`, under the lock: `body` (the store's JSON) as the new `tasks.json`. */
export async function saveLocked(state: DriverState, body: Buffer, lastUpdated: number): Promise<void> {
  const { maxStoreBytes } = state.settings;
  let view: View | undefined;
  try {
    view = await current(state);
  } catch (error) {
    // A store that cannot be read is replaced all the same (a recovery, a migration).
    if (!TaskStoreError.hasCode(error, "CORRUPT_DATA")) throw error;
    view = undefined;
  }
  const currentSize = view ? storeBytes(view) : ((await fs.stat(state.path).catch(() => undefined))?.size ?? 0);
  // A store already over the limit (the limit was lowered) may still shrink.
  if (body.length > maxStoreBytes && body.length > currentSize) throw tooLarge(body.length, maxStoreBytes, state.path);
  refuseIfLockLost(state);
  if (await io("inspect the store path", () => isSymlink(state.path))) {
    const found = await io("read the store", () => readRegularFile(state.path));
    if (found.kind === "not-regular") throw notRegular(state.path, found.type);
    if (found.kind === "too-large" || (found.kind === "file" && !looksLikeStore(found.bytes))) {
      throw errors.corrupt(
        `${state.path} is a symlink to a file that does not look like a taskstore store; not writing through it (nothing was changed)`,
      );
    }
  }
  if (view) await autoBackup(state, view);
  await replaceSnapshot(state, view, body, lastUpdated);
}

/** Folds the journal into `tasks.json` on close, when the store is small and the lock free at once (nobody waits for it). */
export async function compactOnClose(state: DriverState): Promise<void> {
  const view = state.view;
  const { compactOnCloseBytes } = state.settings;
  if (!state.wroteOnce || !view?.matches || view.records.length === 0 || compactOnCloseBytes === 0) return;
  if (storeBytes(view) > compactOnCloseBytes) return;
  const held = state.externalHold && state.lock.held;
  if (!held) {
    try {
      await refuseIrregularFiles(state);
      await state.lock.acquire(0);
    } catch {
      return; // busy: the next writer compacts when the journal is due
    }
  }
  try {
    await state.turn.run(async () => {
      await catchUp(state);
      const now = state.view as View;
      if (now.matches && now.records.length > 0) await compactQuietly(state, now);
    });
  } catch {
    // a store that cannot be read now is not compacted; its next reader reports it
  } finally {
    if (!held) await state.lock.releaseLock();
  }
}
