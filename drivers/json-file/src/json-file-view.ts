import { promises as fs } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import type { TaskTable, WriteSet } from "@taskstore/core";
import { codeOf, READ_LIMIT_BYTES, readRegularFileKept } from "./json-file-atomic.js";
import { errors, io, notRegular } from "./json-file-errors.js";
import { JournalFile } from "./json-file-journal.js";
import { emptyScan, type JournalScan, type Marker, markerOf, scanJournal } from "./json-file-journal-format.js";
import type { DriverState } from "./json-file-state.js";
import type { StoreBytes } from "./json-file-store-bytes.js";
import { parseStore } from "./json-file-store-format.js";

// Reading: the view of the store this instance holds, and bringing it up to date with the files.

/** A file's identity as stat reports it, to notice a `tasks.json` replaced or edited by something else. */
export interface Identity {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** `tasks.json` as this instance last read (or wrote) it. */
export interface Snapshot {
  /** Open while the instance holds the view: no other file can take its inode number meanwhile. */
  handle: FileHandle | undefined;
  identity: Identity | undefined;
  /** Undefined when there is no `tasks.json`. */
  bytes: Buffer | undefined;
  /** The journal that continues it. */
  marker: Marker | undefined;
  /** Whether its checksum matches: this driver wrote it and nothing changed it since (undefined: not checked yet). */
  sealed: boolean | undefined;
}

/** The store as a table, for `transact()`, with the JSON of its tasks kept between writes. */
export interface Writer {
  table: TaskTable;
  bytes: StoreBytes;
}

/**
 * The store as this instance knows it: `tasks.json`, the journal (pinned open), and the journal's
 * valid records that continue the snapshot. Readers and writers catch up from `scan.seen` on.
 */
export interface View {
  snapshot: Snapshot;
  journal: JournalView | undefined;
  /** The journal continues the snapshot (its header names the snapshot's marker): its records are part of the store. */
  matches: boolean;
  /** Those records' change sets, in order (parsed once, when read). */
  records: WriteSet[];
  recordBytes: number;
  /** The time of the last write: the last record's, or the snapshot's `metadata.lastUpdated`. */
  lastUpdated: number;
  /** The store as a table, for `transact()`: built on first use, then kept up to date record by record. */
  writer: Writer | undefined;
}

/** The journal as a view holds it: the open file, and how far it was read. */
export interface JournalView {
  file: JournalFile;
  scan: JournalScan;
}

/** How a snapshot this driver wrote ends: its marker, then the checksum. */
const MARKER_TAIL = /"journal":\{"id":"([0-9a-f-]{8,64})","seq":(\d{1,16}),"checksum":"[0-9a-f]{8}"\}\}$/;

/** The view, caught up with the files. */
export async function current(state: DriverState): Promise<View> {
  await catchUp(state);
  return state.view as View;
}

/**
 * Brings the view up to date: the journal's new bytes, or everything again when the journal or
 * `tasks.json` was replaced (a compaction elsewhere: it seals the journal first, and the seal is
 * what is seen). Returns whether something another instance wrote was found.
 */
export async function catchUp(state: DriverState): Promise<boolean> {
  const view = state.view;
  if (!view) {
    await reload(state);
    return false;
  }
  let foreign = false;
  const seen = await fs.lstat(state.journalPath).catch((error) => {
    if (codeOf(error) === "ENOENT") return undefined;
    throw error;
  });
  const journal = view.journal;
  const same = journal && seen && seen.ino === journal.file.ino && seen.dev === journal.file.dev && seen.size >= journal.scan.seen;
  if (journal && seen && same) {
    if (seen.size > journal.scan.seen) {
      const before = journal.scan.seq;
      readJournal(state, view, journal, await readJournalBytes(state, journal.file, journal.scan.scanned, seen.size));
      if (journal.scan.sealed !== undefined) {
        await reload(state);
        return true;
      }
      foreign = journal.scan.seq !== before;
    }
  } else if (seen && !view.matches && (await adoptJournal(state, view))) {
    // A journal that continues the snapshot this instance has (its first records): read it alone.
    foreign = true;
  } else if (journal || seen) {
    await reload(state);
    return true;
  }
  const now = await snapshotIdentity(state);
  if (!sameIdentity(now, view.snapshot.identity)) {
    await reload(state);
    return true;
  }
  return foreign;
}

/**
 * Takes in a journal that appeared (or replaced one that did not continue the snapshot) when
 * it continues the snapshot this view holds, reading the journal only. False when it does not
 * (or something else changed): the caller reads everything again.
 */
async function adoptJournal(state: DriverState, view: View): Promise<boolean> {
  const marker = view.snapshot.marker;
  if (!marker) return false;
  const opened = await io("open the journal", () => JournalFile.open(state.journalPath));
  if (!(opened instanceof JournalFile)) return false;
  let adopted = false;
  try {
    const bytes = await readJournalBytes(state, opened, 0);
    const nl = bytes.indexOf(0x0a);
    const probe = emptyScan();
    if (nl >= 0) scanJournal(probe, bytes.subarray(0, nl + 1), () => undefined);
    if (probe.header?.id !== marker.id || probe.header.seq !== marker.seq) return false;
    // The snapshot must still be the one the view has (the journal was opened after it was read).
    if (!sameIdentity(await snapshotIdentity(state), view.snapshot.identity)) return false;
    const old = view.journal;
    view.journal = { file: opened, scan: emptyScan() };
    view.matches = true;
    adopted = true;
    await old?.file.close();
    readJournal(state, view, view.journal, bytes);
    return true;
  } finally {
    if (!adopted) await opened.close();
  }
}

/**
 * Reads the store from scratch. The journal is opened first and read last: a snapshot read in
 * between is then either the one the journal continues (its records apply) or a newer one
 * that already holds them (a compaction sealed the journal before replacing `tasks.json`).
 */
async function reload(state: DriverState): Promise<void> {
  const old = state.view;
  state.view = undefined;
  await closeView(old); // read again from scratch: what it pinned no longer matters
  const opened = await io("open the journal", () => JournalFile.open(state.journalPath));
  if (opened && "notRegular" in opened) throw notRegular(state.journalPath, opened.notRegular);
  let snapshot: Snapshot;
  try {
    snapshot = await readSnapshot(state);
  } catch (error) {
    await opened?.close();
    throw error;
  }
  const view: View = {
    snapshot,
    journal: undefined,
    matches: false,
    records: [],
    recordBytes: 0,
    lastUpdated: snapshotTime(snapshot),
    writer: undefined,
  };
  if (opened) {
    const scan = emptyScan();
    view.journal = { file: opened, scan };
    let bytes: Buffer;
    try {
      bytes = await readJournalBytes(state, opened, 0);
    } catch (error) {
      await closeView(view);
      throw error;
    }
    // Whether it continues the snapshot is in its first line.
    const marker = snapshot.marker;
    const firstLine = bytes.indexOf(0x0a);
    const probe = emptyScan();
    scanJournal(probe, firstLine >= 0 ? bytes.subarray(0, firstLine + 1) : Buffer.alloc(0), () => undefined);
    view.matches = marker !== undefined && probe.header?.id === marker.id && probe.header.seq === marker.seq;
    if (marker && probe.corrupt && bytes.length > 0) {
      await closeView(view);
      throw errors.corrupt(`the journal ${state.journalPath} is damaged: ${probe.corrupt}`);
    }
    readJournal(state, view, view.journal, bytes);
  }
  state.view = view;
}

/**
 * Takes `chunk` (the bytes of `journal` from its `scan.scanned` on) into the view: valid records
 * join it when the journal continues the snapshot. Returns the valid lines read (seals too).
 */
/** A record of the journal the view continues, taken into it (and into its writer's table, if made). */
export function takeRecord(view: View, writes: WriteSet, at: number, bytes: number): void {
  view.records.push(writes);
  view.recordBytes += bytes;
  view.lastUpdated = at;
  if (view.writer) {
    view.writer.bytes.forget(writes);
    view.writer.table.apply(writes);
  }
}

export function readJournal(state: DriverState, view: View, journal: JournalView, chunk: Buffer): Buffer[] {
  const valid: Buffer[] = [];
  const applies = journal === view.journal && view.matches;
  scanJournal(journal.scan, chunk, (record, line) => {
    valid.push(line);
    if (!applies || record.seal !== undefined) return;
    takeRecord(view, record.writes, record.at, line.length);
  });
  if (journal.scan.corrupt && applies) {
    if (state.view === view) state.view = undefined;
    void closeView(view);
    throw errors.corrupt(`the journal ${state.journalPath} is damaged: ${journal.scan.corrupt}; the records after it cannot be applied`);
  }
  return valid;
}

export async function readJournalBytes(state: DriverState, file: JournalFile, from: number, to?: number): Promise<Buffer> {
  const bytes = await io("read the journal", () => file.read(from, to));
  state.bytesRead.journal += bytes.length;
  return bytes;
}

export async function snapshotIdentity(state: DriverState): Promise<Identity | undefined> {
  try {
    return identityOf(await fs.stat(state.path, { bigint: true }));
  } catch (error) {
    if (codeOf(error) === "ENOENT") return undefined;
    throw error;
  }
}

/** `tasks.json`, kept open. Its marker is read from its last bytes where this driver wrote it, else from the parsed document. */
async function readSnapshot(state: DriverState): Promise<Snapshot> {
  const found = await io("read the store", () => readRegularFileKept(state.path));
  switch (found.kind) {
    case "missing":
      return { handle: undefined, identity: undefined, bytes: undefined, marker: undefined, sealed: undefined };
    case "not-regular":
      throw notRegular(state.path, found.type);
    case "too-large":
      // Never "recovered": restore() refuses a store this size too.
      throw errors.corrupt(
        `${state.path} is ${found.size} bytes, more than this driver can read (${READ_LIMIT_BYTES}, V8's longest string); it was left as it is`,
      );
  }
  state.bytesRead.snapshot += found.bytes.length;
  const tail = MARKER_TAIL.exec(found.bytes.toString("latin1", Math.max(0, found.bytes.length - 160)));
  let marker: Marker | undefined;
  if (tail) marker = { id: tail[1] as string, seq: Number(tail[2]) };
  else {
    try {
      marker = markerOf(parseStore(found.bytes, state.path));
    } catch {
      marker = undefined; // not JSON: whoever reads it next says so
    }
  }
  return { handle: found.handle, identity: identityOf(found.stat), bytes: found.bytes, marker, sealed: undefined };
}

/** The sequence of the last change the view holds. */
export function lastSeq(view: View): number {
  if (view.journal && view.matches) return view.journal.scan.seq;
  return Math.max(view.snapshot.marker?.seq ?? 0, view.journal?.scan.header ? view.journal.scan.seq : 0);
}

/** The store's size on disk as the view knows it: tasks.json and the journal. */
export function storeBytes(view: View): number {
  return (view.snapshot.bytes?.length ?? 0) + (view.journal?.scan.seen ?? 0);
}

function snapshotTime(snapshot: Snapshot): number {
  if (!snapshot.bytes) return 0;
  const found = /"lastUpdated":(\d{1,16})/.exec(snapshot.bytes.toString("latin1", Math.max(0, snapshot.bytes.length - 600)));
  return found ? Number(found[1]) : 0;
}

export function identityOf(stat: { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): Identity {
  return { dev: stat.dev, ino: stat.ino, size: stat.size, mtimeNs: stat.mtimeNs, ctimeNs: stat.ctimeNs };
}

export function sameIdentity(a: Identity | undefined, b: Identity | undefined): boolean {
  if (!a || !b) return a === b;
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

export async function closeView(view: View | undefined): Promise<void> {
  if (!view) return;
  await view.snapshot.handle?.close().catch(() => undefined);
  await view.journal?.file.close();
}
