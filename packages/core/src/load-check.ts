import { isPlainObject, LIMITS } from "./schema.js";

/*
 * The load path's check, by hand. Loading a store checks every task against the schema before
 * anything uses it; zod did that at about 5 us a task (50 ms at 10,000 tasks, four times the
 * JSON.parse), copying every object on the way. This predicate answers the same question in
 * place, ten times faster: true only when zod would accept the value AND its output would equal
 * the input (so the input can be used as it is). Anything else, valid or not, goes to zod, which
 * then decides and names the failing path. It may be stricter than the schema, never laxer.
 *
 * In place is safe because `loadData()` hands its caller data it owns (the contract says so).
 */

const ID = /^[A-Za-z0-9_-]{1,128}$/;
const VERSION = /^\d+\.\d+\.\d+$/;
const STATUSES = new Set(["pending", "running", "paused", "completed", "failed", "cancelled"]);
const LOG_TYPES = new Set(["stdout", "stderr", "log", "error", "info", "debug"]);
const PROGRESS_KEYS = new Set(["percent", "currentStep", "totalSteps", "estimatedTimeRemaining", "message"]);

/** True when `data` is a store whose envelope and every task pass the schema exactly as they are. */
export function isValidStoreAsIs(data: unknown): boolean {
  if (!isPlainObject(data)) return false;
  if (typeof data.version !== "string" || !VERSION.test(data.version)) return false;
  const meta = data.metadata;
  if (!isPlainObject(meta) || !isCount(meta.lastUpdated) || !isCount(meta.totalTasks)) return false;
  const tasks = data.tasks;
  if (!Array.isArray(tasks)) return false;
  for (let i = 0; i < tasks.length; i++) if (!isValidTaskAsIs(tasks[i])) return false;
  return true;
}

function isValidTaskAsIs(task: unknown): boolean {
  if (!isPlainObject(task)) return false;
  const t = task as Record<string, unknown>;
  if (typeof t.id !== "string" || !ID.test(t.id)) return false;
  if (typeof t.title !== "string" || t.title.length < 1 || t.title.length > LIMITS.titleLength) return false;
  if (!optionalText(t, "description", LIMITS.descriptionLength)) return false;
  if (typeof t.status !== "string" || !STATUSES.has(t.status)) return false;
  if ("parentId" in t && (typeof t.parentId !== "string" || !ID.test(t.parentId))) return false;
  if (!optionalText(t, "assignedTo", LIMITS.assignedToLength)) return false;
  if (!isValidProgress(t.progress)) return false;
  if (!isCount(t.createdAt) || !isCount(t.updatedAt)) return false;
  if ("droppedLogCount" in t && !isCount(t.droppedLogCount)) return false;
  const children = t.children;
  if (!Array.isArray(children)) return false;
  for (let i = 0; i < children.length; i++) {
    const child = children[i];
    if (typeof child !== "string" || !ID.test(child)) return false;
  }
  const logs = t.logs;
  if (!Array.isArray(logs)) return false;
  for (let i = 0; i < logs.length; i++) if (!isValidLogEntry(logs[i])) return false;
  return isValidMetadata(t.metadata);
}

function isValidProgress(progress: unknown): boolean {
  if (!isPlainObject(progress)) return false;
  // zod drops unknown progress fields: such a progress is valid but not "as is".
  for (const key in progress) if (!PROGRESS_KEYS.has(key)) return false;
  const p = progress as Record<string, unknown>;
  if (typeof p.percent !== "number" || !(p.percent >= 0 && p.percent <= 100)) return false;
  if ("currentStep" in p) {
    const step = p.currentStep;
    if (typeof step === "string") {
      if (step.length > LIMITS.progressTextLength) return false;
    } else if (!isCount(step)) {
      return false;
    }
  }
  if ("totalSteps" in p && !isCount(p.totalSteps)) return false;
  if ("estimatedTimeRemaining" in p) {
    const eta = p.estimatedTimeRemaining;
    if (typeof eta !== "number" || !Number.isFinite(eta) || eta < 0) return false;
  }
  return optionalText(p, "message", LIMITS.progressTextLength);
}

function isValidLogEntry(entry: unknown): boolean {
  if (!isPlainObject(entry)) return false;
  const e = entry as Record<string, unknown>;
  if (!isCount(e.timestamp)) return false;
  if (typeof e.output !== "string" || e.output.length > LIMITS.logOutputLength) return false;
  if (typeof e.type !== "string" || !LOG_TYPES.has(e.type)) return false;
  return optionalText(e, "source", LIMITS.logSourceLength);
}

/** JSON data only, as the metadata schema wants it: plain objects, arrays, finite numbers, bounded. */
function isValidMetadata(metadata: unknown): boolean {
  if (!isPlainObject(metadata)) return false;
  let empty = true;
  for (const _ in metadata) {
    empty = false;
    break;
  }
  if (empty) return Object.getOwnPropertySymbols(metadata).length === 0;
  const bound = jsonSizeBound(metadata, 1);
  if (bound < 0) return false;
  // The bound is never below the JSON text's length: under the limit, no need to make the text
  // (a string per task was a third of this check's time, and garbage).
  return bound <= LIMITS.metadataSize || JSON.stringify(metadata).length <= LIMITS.metadataSize;
}

/** The longest JSON text a value this long can have, per character of a string (`\uXXXX`). */
const ESCAPED = 6;
/** The longest text of a finite number (`-1.2345678901234567e-300`). */
const NUMBER_TEXT = 25;

/**
 * -1 when `value` is not JSON data as the metadata schema wants it; else an upper bound of the
 * length of its JSON text (each character of a string counted as its longest escape).
 */
function jsonSizeBound(value: unknown, depth: number): number {
  switch (typeof value) {
    case "string":
      return ESCAPED * value.length + 2;
    case "boolean":
      return 5;
    case "number":
      return Number.isFinite(value) ? NUMBER_TEXT : -1;
    case "object": {
      if (value === null) return 4;
      // Deeper than the limit is invalid; the depth bound also ends any cycle.
      if (depth > LIMITS.metadataDepth) return -1;
      let size = 2;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const item = jsonSizeBound(value[i], depth + 1);
          if (item < 0) return -1;
          size += item + 1;
        }
        return size;
      }
      if (!isPlainObject(value) || Object.getOwnPropertySymbols(value).length > 0) return -1;
      for (const key of Object.keys(value)) {
        const item = jsonSizeBound(value[key], depth + 1);
        if (item < 0) return -1;
        size += ESCAPED * key.length + 3 + item + 1;
      }
      return size;
    }
    default:
      return -1;
  }
}

/** Absent, or a string no longer than `max` (a key holding `undefined` is left to zod). */
function optionalText(object: Record<string, unknown>, key: string, max: number): boolean {
  if (!(key in object)) return true;
  const value = object[key];
  return typeof value === "string" && value.length <= max;
}

/** A safe non-negative integer (epoch milliseconds, counts). */
function isCount(value: unknown): boolean {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}
