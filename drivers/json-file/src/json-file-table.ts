import { emptyStore, isLegacyData, isWritableVersion, parseStorageData, type StorageData, TaskTable, type WriteSet } from "@taskstore/core";
import { errors } from "./json-file-errors.js";
import { isSealed } from "./json-file-journal-format.js";
import { StoreBytes } from "./json-file-store-bytes.js";
import { parseStore } from "./json-file-store-format.js";
import type { View, Writer } from "./json-file-view.js";

// The store a view stands for: as data for `loadData()`, as a table for `transact()`.

/** The store a view stands for, as fresh objects (the caller may change them). */
export function dataOf(file: string, view: View): StorageData {
  const { snapshot } = view;
  let raw: unknown;
  if (!snapshot.bytes) raw = emptyStore();
  else raw = parseStore(snapshot.bytes, file);
  if (Array.isArray(raw)) return raw as unknown as StorageData; // a legacy todo file: core migrates it
  delete (raw as { journal?: unknown }).journal;
  if (view.records.length === 0) return raw as StorageData;
  // Records apply to a store of the right shape; anything else is returned as it is, for core's check to refuse.
  if (!isTableShaped(raw)) return raw as StorageData;
  const table = TaskTable.fromData(raw as StorageData);
  // Copies of the log entries: the caller owns what it gets, the view keeps its records.
  for (const writes of view.records) table.apply(copyOf(writes));
  return table.toData(view.lastUpdated);
}

/** The view's store as a table for `transact()`, checked against core's schema unless this driver sealed the snapshot. */
export function writerOf(file: string, view: View): Writer {
  if (view.writer) return view.writer;
  const { snapshot } = view;
  let table: TaskTable;
  if (!snapshot.bytes) table = new TaskTable();
  else {
    snapshot.sealed ??= isSealed(snapshot.bytes);
    table = tableOf(file, snapshot.bytes, snapshot.sealed);
  }
  for (const writes of view.records) table.apply(writes);
  view.writer = { table, bytes: new StoreBytes() };
  return view.writer;
}

function tableOf(file: string, text: Buffer, sealed: boolean): TaskTable {
  const raw = parseStore(text, file);
  if (isLegacyData(raw)) throw errors.corrupt(`${file} is a legacy todo file; load the store to migrate it first`);
  delete (raw as { journal?: unknown }).journal;
  const version = (raw as { version?: unknown }).version;
  // A newer major version is read as it is; core refuses to write it through the reader's version().
  if (typeof version === "string" && !isWritableVersion(version) && Array.isArray(raw.tasks)) return TaskTable.fromData(raw);
  // Sealed: this driver wrote exactly these bytes from a table core had checked.
  if (sealed && isTableShaped(raw)) return TaskTable.fromData(raw);
  try {
    return TaskTable.fromData(parseStorageData(raw));
  } catch (error) {
    throw errors.corrupt(`${file} fails the schema; load the store to recover it: ${(error as Error).message}`, error);
  }
}

/** A change set whose log entries are copies (a table built from it does not share them with the view). */
function copyOf(writes: WriteSet): WriteSet {
  if (writes.logs.length === 0) return writes;
  return { ...writes, logs: writes.logs.map((log) => ({ ...log, entries: log.entries.map((entry) => ({ ...entry })) })) };
}

/** A store object the records can be applied to: a tasks array of objects with string ids, and a metadata object. */
function isTableShaped(raw: unknown): boolean {
  if (typeof raw !== "object" || raw === null) return false;
  const { tasks, metadata } = raw as { tasks?: unknown; metadata?: unknown };
  return (
    Array.isArray(tasks) &&
    tasks.every(
      (task) =>
        typeof task === "object" &&
        task !== null &&
        typeof (task as { id?: unknown }).id === "string" &&
        Array.isArray((task as { logs?: unknown }).logs),
    ) &&
    typeof metadata === "object" &&
    metadata !== null
  );
}
