import type { LogWrite, TaskBody, WriteSet } from "@taskstore/core";
import { crcHex } from "./json-file-checksum.js";

/*
 * The on-disk formats of the journal and of the snapshot's seal. Every line and the snapshot end
 * with a checksum of the bytes before it: `..., "checksum":"<crc32 hex>"}`. See the README's
 * "Reading a store by hand".
 */

/** The first line of every journal names its format. */
export const JOURNAL_FORMAT = "taskstore-journal/1";

/** The snapshot's `journal` field: the journal that continues it, and the sequence the snapshot holds up to. */
export interface Marker {
  id: string;
  seq: number;
}

/** One journal line after its checksum was checked: a committed change set, or the seal that ends the journal. */
export interface JournalRecord {
  seq: number;
  at: number;
  writes: WriteSet;
  /** The journal ends here: the next snapshot (and journal) has this id. */
  seal?: string;
  /** The record follows abandoned bytes (a torn tail) that start at this offset. */
  after?: number;
}

const CHECKSUM_KEY = '"checksum":"';
/** `"checksum":"xxxxxxxx"}` */
const LINE_TAIL = CHECKSUM_KEY.length + 8 + 2;
/** `"checksum":"xxxxxxxx"}}` */
const SNAPSHOT_TAIL = CHECKSUM_KEY.length + 8 + 3;
const NEWLINE = 0x0a;

/** Appends `"checksum":"<crc of everything before it>"` and the closing braces to `prefix` (which ends with `{` or `,`). */
function withChecksum(prefix: string, close: string): Buffer {
  const head = Buffer.from(`${prefix}${CHECKSUM_KEY}`);
  const covered = head.subarray(0, head.length - CHECKSUM_KEY.length);
  return Buffer.concat([head, Buffer.from(`${crcHex(covered)}"${close}`)]);
}

/** The bytes a checksum covers, when `bytes` end with a checksum over them (and `tail` more characters); else undefined. */
function checkedPrefix(bytes: Buffer, tailLength: number, close: string): Buffer | undefined {
  if (bytes.length < tailLength + 2) return undefined;
  const at = bytes.length - tailLength;
  if (bytes.toString("latin1", at, at + CHECKSUM_KEY.length) !== CHECKSUM_KEY) return undefined;
  const hex = bytes.toString("latin1", at + CHECKSUM_KEY.length, at + CHECKSUM_KEY.length + 8);
  if (bytes.toString("latin1", at + CHECKSUM_KEY.length + 8) !== `"${close}`) return undefined;
  const covered = bytes.subarray(0, at);
  return crcHex(covered) === hex ? covered : undefined;
}

/** The journal's first line. */
export function encodeHeader(marker: Marker, created: number): Buffer {
  const json = JSON.stringify({ format: JOURNAL_FORMAT, journal: marker.id, seq: marker.seq, created });
  return Buffer.concat([withChecksum(`${json.slice(0, -1)},`, "}"), Buffer.from("\n")]);
}

/** One record line (newline included). */
export function encodeRecord(record: JournalRecord): Buffer {
  const { writes } = record;
  const fields: Record<string, unknown> = { seq: record.seq, at: record.at };
  if (record.after !== undefined) fields.after = record.after;
  if (record.seal !== undefined) fields.seal = record.seal;
  if (writes.puts.length > 0) fields.puts = writes.puts;
  if (writes.logs.length > 0)
    fields.logs = writes.logs.map((log) => ({
      id: log.id,
      entries: log.entries,
      keep: log.keep,
      ...(log.replace ? { replace: true } : {}),
    }));
  if (writes.deletes.length > 0) fields.deletes = writes.deletes;
  if (writes.version) fields.version = writes.version;
  const json = JSON.stringify(fields);
  return Buffer.concat([withChecksum(`${json.slice(0, -1)},`, "}"), Buffer.from("\n")]);
}

export const NO_WRITES: WriteSet = Object.freeze({ puts: [], logs: [], deletes: [] }) as WriteSet;

/**
 * Seals a snapshot: `body` is the store's JSON (an object, ending with `}`); the result ends with
 * `"journal":{"id":...,"seq":...,"checksum":"..."}}`, the checksum covering every byte before it.
 */
export function sealSnapshot(body: Buffer, marker: Marker): Buffer {
  if (body[body.length - 1] !== 0x7d) throw new Error("a snapshot body is a JSON object");
  const open = body.length > 2 ? "," : ""; // `{}`: no comma before the field
  const field = `${open}"journal":{"id":${JSON.stringify(marker.id)},"seq":${marker.seq},`;
  const head = Buffer.concat([body.subarray(0, body.length - 1), Buffer.from(`${field}${CHECKSUM_KEY}`)]);
  const covered = head.subarray(0, head.length - CHECKSUM_KEY.length);
  return Buffer.concat([head, Buffer.from(`${crcHex(covered)}"}}`)]);
}

/** Whether a snapshot's bytes end with a checksum that matches them: written by this driver and not changed since. */
export function isSealed(bytes: Buffer): boolean {
  return checkedPrefix(bytes, SNAPSHOT_TAIL, "}}") !== undefined;
}

/** The `journal` field of a parsed snapshot, when it is well formed. */
export function markerOf(parsed: unknown): Marker | undefined {
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
  const field = (parsed as { journal?: unknown }).journal;
  if (typeof field !== "object" || field === null) return undefined;
  const { id, seq } = field as { id?: unknown; seq?: unknown };
  if (typeof id !== "string" || !/^[0-9a-f-]{8,64}$/.test(id) || !Number.isSafeInteger(seq) || (seq as number) < 0) return undefined;
  return { id, seq: seq as number };
}

/** The header of a journal, from its first line (checksum checked), or undefined. */
export function parseHeader(line: Buffer): Marker | undefined {
  if (!checkedPrefix(line, LINE_TAIL, "}")) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line.toString("utf8"));
  } catch {
    return undefined;
  }
  const { format, journal, seq } = parsed as { format?: unknown; journal?: unknown; seq?: unknown };
  if (format !== JOURNAL_FORMAT || typeof journal !== "string" || !Number.isSafeInteger(seq)) return undefined;
  return { id: journal, seq: seq as number };
}

/** A record line (without its newline) whose checksum matches, parsed; undefined for anything else. */
export function parseRecord(line: Buffer): JournalRecord | undefined {
  if (!checkedPrefix(line, LINE_TAIL, "}")) return undefined;
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(line.toString("utf8")) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const { seq, at, after, seal, puts, logs, deletes, version } = parsed;
  if (!Number.isSafeInteger(seq) || typeof at !== "number") return undefined;
  if (after !== undefined && !Number.isSafeInteger(after)) return undefined;
  if (seal !== undefined && typeof seal !== "string") return undefined;
  if (!isListOf(puts, (put) => isObject(put) && typeof put.id === "string")) return undefined;
  if (!isListOf(logs, (log) => isObject(log) && typeof log.id === "string" && Array.isArray(log.entries) && Number.isSafeInteger(log.keep)))
    return undefined;
  if (!isListOf(deletes, (id) => typeof id === "string")) return undefined;
  if (version !== undefined && typeof version !== "string") return undefined;
  const writes: WriteSet = {
    puts: (puts as TaskBody[] | undefined) ?? [],
    logs: ((logs as LogWrite[] | undefined) ?? []).map((log) => ({ ...log, replace: log.replace === true })),
    deletes: (deletes as string[] | undefined) ?? [],
    ...(version ? { version: version as string } : {}),
  };
  return {
    seq: seq as number,
    at,
    writes,
    ...(seal !== undefined ? { seal: seal as string } : {}),
    ...(after !== undefined ? { after: after as number } : {}),
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isListOf(value: unknown, check: (item: unknown) => boolean): boolean {
  return value === undefined || (Array.isArray(value) && value.every(check));
}

/**
 * What a reader knows of a journal after reading it up to `scanned`. A record is valid when its
 * checksum matches and its sequence is the one after the last valid record's: a writer that lost
 * its lock while it stalled appends a record with a sequence already taken, which every reader
 * skips. Bytes that are not a valid line (a record cut by a crash) are abandoned: ignored at the
 * end of the journal (a torn tail), and skipped when the next valid record says it follows them
 * (`after`, written by the next writer). A valid record after abandoned bytes that does not say
 * so, or one that skips a sequence, means a record in the middle was damaged: `corrupt`.
 */
export interface JournalScan {
  header: Marker | undefined;
  /** The last valid record's sequence (the header's when there is none). */
  seq: number;
  /** Just past the last valid line (the header included). */
  validEnd: number;
  /** Just past the last complete line read; an incomplete line may follow. */
  scanned: number;
  /** Where abandoned bytes start, when complete lines after the last valid one are not valid. */
  junkFrom: number | undefined;
  /** The journal ends with an incomplete line (being written now, or cut by a crash). */
  partial: boolean;
  /** Set by a valid seal: no record after it is valid. */
  sealed: string | undefined;
  /** Why the journal is damaged in the middle, when it is. */
  corrupt: string | undefined;
  /** Valid records (not seals) read. */
  records: number;
  /** How many bytes of the file were read (`scanned` and an incomplete line after it). */
  seen: number;
}

export function emptyScan(): JournalScan {
  return {
    header: undefined,
    seq: 0,
    validEnd: 0,
    scanned: 0,
    junkFrom: undefined,
    partial: false,
    sealed: undefined,
    corrupt: undefined,
    records: 0,
    seen: 0,
  };
}

/** Where the next record must say it comes after (`after`), when the journal ends with abandoned bytes. */
export function tornFrom(scan: JournalScan): number | undefined {
  return scan.junkFrom ?? (scan.partial ? scan.scanned : undefined);
}

/**
 * Reads `chunk` (the journal's bytes from `scan.scanned` on) into `scan`, calling `onRecord` for
 * each valid record in order, seals included (with its line, newline included). Stops at the
 * first sign of damage (`scan.corrupt`).
 */
export function scanJournal(scan: JournalScan, chunk: Buffer, onRecord: (record: JournalRecord, line: Buffer) => void): void {
  let start = 0;
  for (;;) {
    if (scan.corrupt) return;
    const nl = chunk.indexOf(NEWLINE, start);
    if (nl < 0) break;
    const line = chunk.subarray(start, nl);
    const lineStart = scan.scanned;
    const lineEnd = lineStart + (nl + 1 - start);
    scanLine(scan, line, lineStart, lineEnd, chunk.subarray(start, nl + 1), onRecord);
    scan.scanned = lineEnd;
    start = nl + 1;
  }
  scan.partial = start < chunk.length;
  scan.seen = scan.scanned + (chunk.length - start);
}

function scanLine(
  scan: JournalScan,
  line: Buffer,
  lineStart: number,
  lineEnd: number,
  withNewline: Buffer,
  onRecord: (record: JournalRecord, line: Buffer) => void,
): void {
  if (!scan.header) {
    const header = lineStart === 0 ? parseHeader(line) : undefined;
    if (!header) {
      scan.corrupt = "its first line is not a journal header";
      return;
    }
    scan.header = header;
    scan.seq = header.seq;
    scan.validEnd = lineEnd;
    return;
  }
  const record = line.length > 0 ? parseRecord(line) : undefined;
  if (!record) {
    scan.junkFrom ??= lineStart;
    return;
  }
  if (scan.sealed !== undefined || record.seq <= scan.seq) return; // a late record of a writer that lost its lock
  const follows = scan.junkFrom === undefined ? record.after === undefined : record.after === scan.junkFrom;
  if (record.seq !== scan.seq + 1 || !follows) {
    scan.corrupt =
      scan.junkFrom !== undefined
        ? `the bytes at offset ${scan.junkFrom} are damaged, and record ${record.seq} follows them`
        : `record ${record.seq} follows record ${scan.seq}`;
    return;
  }
  scan.seq = record.seq;
  scan.validEnd = lineEnd;
  scan.junkFrom = undefined;
  if (record.seal !== undefined) scan.sealed = record.seal;
  else scan.records++;
  onRecord(record, withNewline);
}
