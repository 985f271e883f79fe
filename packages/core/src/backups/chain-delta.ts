import { CorruptDataError } from "../errors.js";
import { joinStore, type StoreEnvelope, splitStore, taskBody } from "../kit/store-envelope.js";
import type { LogEntry, StorageData, StoredTask, TaskBody } from "../schema.js";

/*
 * What an incremental point holds: the tasks added or changed since the previous point, the ids
 * removed, and the store's envelope. A task whose log only grew (and lost its oldest entries to
 * the log cap) is stored as its body plus the new entries, not with its whole log: an
 * appendOutput to a task with 10,000 entries costs a point that one entry, as it costs the store.
 */

/** A task whose log kept its entries after the first `drop` and gained `entries` at the end. */
export interface LogAppend {
  task: TaskBody;
  drop: number;
  entries: LogEntry[];
}

export interface Delta {
  envelope: StoreEnvelope;
  /** Tasks added, or changed in a way other than appending to their log: stored whole. */
  puts: StoredTask[];
  appends: LogAppend[];
  removed: string[];
}

/** The store at one point: its envelope and its tasks by id (in the store's order). */
export interface ChainState {
  envelope: StoreEnvelope;
  tasks: Map<string, StoredTask>;
}

/**
 * The repository's own bookkeeping in `metadata` (the ids of recent commits, recent storage
 * errors): not the user's data, so neither captured nor restored.
 */
const BOOKKEEPING = new Set(["commitIds", "recentErrors"]);

export function stateOf(data: StorageData): ChainState {
  const { envelope, tasks } = splitStore(data);
  const metadataExtra: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(envelope.metadataExtra)) if (!BOOKKEEPING.has(key)) metadataExtra[key] = value;
  return { envelope: { ...envelope, metadataExtra }, tasks: new Map(tasks.map((task) => [task.id, task])) };
}

export function dataOf(state: ChainState): StorageData {
  return joinStore(state.envelope, [...state.tasks.values()]);
}

/** What changed from `before` to `after`. */
export function diffStates(before: ChainState, after: ChainState): Delta {
  const puts: StoredTask[] = [];
  const appends: LogAppend[] = [];
  for (const [id, task] of after.tasks) {
    const old = before.tasks.get(id);
    if (old === undefined) {
      puts.push(task);
      continue;
    }
    if (sameTask(old, task)) continue;
    const grown = logGrowth(old, task);
    if (grown) appends.push({ task: taskBody(task), ...grown });
    else puts.push(task);
  }
  const removed = [...before.tasks.keys()].filter((id) => !after.tasks.has(id));
  return { envelope: after.envelope, puts, appends, removed };
}

/** True when the delta changes nothing but `lastUpdated` (which every write moves). */
export function isEmptyDelta(delta: Delta, before: ChainState): boolean {
  if (delta.puts.length > 0 || delta.appends.length > 0 || delta.removed.length > 0) return false;
  const { lastUpdated: _a, ...next } = delta.envelope;
  const { lastUpdated: _b, ...prev } = before.envelope;
  return sameValue(next, prev);
}

/** Applies a point's delta to `state` in place. A delta that does not fit the state is a damaged chain. */
export function applyDelta(state: ChainState, delta: Delta, pointId: string): void {
  for (const id of delta.removed) state.tasks.delete(id);
  for (const task of delta.puts) state.tasks.set(task.id, task);
  for (const { task, drop, entries } of delta.appends) {
    const old = state.tasks.get(task.id);
    if (!old || drop > old.logs.length) {
      throw new CorruptDataError(
        `backup point ${pointId} appends to task ${task.id}, which the points before it do not hold as it expects`,
      );
    }
    state.tasks.set(task.id, { ...task, logs: old.logs.slice(drop).concat(entries) });
  }
  state.envelope = delta.envelope;
}

function sameTask(a: StoredTask, b: StoredTask): boolean {
  if (a.updatedAt !== b.updatedAt || a.logs.length !== b.logs.length) return false;
  // Logs from their end: what changes there is the newest entry.
  for (let i = a.logs.length - 1; i >= 0; i--) if (!sameValue(a.logs[i], b.logs[i])) return false;
  return sameFields(a, b, "logs");
}

/**
 * How `after`'s log continues `before`'s: the oldest `drop` entries gone (the log cap, counted in
 * `droppedLogCount`) and `entries` added. Undefined when the log was rewritten otherwise.
 */
function logGrowth(before: StoredTask, after: StoredTask): { drop: number; entries: LogEntry[] } | undefined {
  const counted = (after.droppedLogCount ?? 0) - (before.droppedLogCount ?? 0);
  for (const drop of counted > 0 ? [counted, 0] : [0]) {
    const kept = before.logs.length - drop;
    if (kept < 0 || after.logs.length < kept) continue;
    let same = true;
    for (let i = kept - 1; i >= 0 && same; i--) same = sameValue(before.logs[drop + i], after.logs[i]);
    if (same) return { drop, entries: after.logs.slice(kept) };
  }
  return undefined;
}

/** Deep equality of JSON data (key order aside). */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    if (a.length !== other.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameValue(a[i], other[i])) return false;
    return true;
  }
  return sameFields(a, b);
}

/** Every own field of `a` and `b` (but `skip`) equal, and no other. */
function sameFields(a: object, b: object, skip?: string): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const key of keys) {
    if (key === skip) continue;
    if (!Object.hasOwn(b, key) || !sameValue((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key])) return false;
  }
  return true;
}
