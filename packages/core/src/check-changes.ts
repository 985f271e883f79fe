import type { TaskChange } from "./changes.js";
import { ValidationError, type ValidationIssue } from "./errors.js";
import {
  checkTaskId,
  isPlainObject,
  LIMITS,
  LogTypeSchema,
  parseOrThrow,
  parseStoredTask,
  type StoredTask,
  StoredTaskSchema,
  TaskProgressSchema,
  TaskStatusSchema,
} from "./schema.js";

/*
 * The one gate every write passes: `TaskRepository.apply()` (and so `save`, `saveMany`, `remove`
 * and every `TaskManager` operation) checks each change set here before anything is queued, so a
 * text no input schema saw (a `fail()` note, a change set built by hand) meets the same limits as
 * `appendOutput`. Loading never goes through it: a store an older version wrote stays readable.
 */

const PATCHABLE = ["title", "description", "status", "assignedTo", "progress", "metadata"] as const;
const UNSETTABLE = new Set(["description", "assignedTo"]);
const PatchSetSchema = StoredTaskSchema.pick({
  title: true,
  description: true,
  status: true,
  assignedTo: true,
  progress: true,
  metadata: true,
})
  .partial()
  .strict();
const MergeProgressSchema = TaskProgressSchema.partial().strict();
const LOG_TYPES = new Set<string>(LogTypeSchema.options);
const STATUSES = new Set<string>(TaskStatusSchema.options);

/** Change objects already checked (the manager checks before memory, the repository again). */
const checked = new WeakSet<object>();
/** Tasks that `parseStoredTask` or the manager built: only their text still needs the Unicode check. */
const parsedTasks = new WeakSet<object>();

/** Marks a task as the output of `parseStoredTask` (or built from parsed input): its schema check is done. */
export function markParsed<T extends StoredTask>(task: T): T {
  parsedTasks.add(task);
  return task;
}

/**
 * Checks a change set: its shape, every id, every limit of the schema, and that every string is
 * well-formed Unicode (a lone surrogate cannot be stored alike by every backend: SQLite's UTF-8
 * turns it into U+FFFD, so every driver refuses it). Returns the change set, with any change
 * whose values were normalised (parsed copies) replaced; throws `ValidationError` naming the
 * path and rule, and then nothing is written.
 */
export function checkChanges(changes: unknown, subject = "changes"): TaskChange[] {
  if (!Array.isArray(changes)) {
    throw new ValidationError([{ path: [], rule: "type", message: "a change set is an array of changes" }], { subject });
  }
  let copy: TaskChange[] | undefined;
  for (let i = 0; i < changes.length; i++) {
    const change: unknown = changes[i];
    if (typeof change === "object" && change !== null && checked.has(change)) continue;
    const issues: ValidationIssue[] = [];
    const normal = checkChange(change, [i], issues);
    if (issues.length > 0) throw new ValidationError(issues.slice(0, 20), { subject });
    checked.add(normal);
    if (normal !== change) {
      copy ??= changes.slice();
      copy[i] = normal;
    }
  }
  return copy ?? (changes as TaskChange[]);
}

function checkChange(change: unknown, path: (string | number)[], issues: ValidationIssue[]): TaskChange {
  if (!isPlainObject(change)) {
    issues.push({ path, rule: "type", message: "must be a change object" });
    return change as TaskChange;
  }
  const c = change as Record<string, unknown>;
  switch (c.type) {
    case "create":
    case "put": {
      let task = c.task as StoredTask;
      if (!parsedTasks.has(task as object)) {
        task = collect(issues, [...path, "task"], () => parseStoredTask(c.task)) ?? task;
        if (issues.length > 0) return change as TaskChange;
      }
      wellFormedTask(task, [...path, "task"], issues);
      return task === c.task ? (change as TaskChange) : { type: c.type, task };
    }
    case "patch": {
      id(c.id, [...path, "id"], issues);
      at(c.at, path, issues);
      let set = c.set as Record<string, unknown>;
      if (!isPlainObject(set)) {
        issues.push({ path: [...path, "set"], rule: "type", message: "must be an object of fields" });
        return change as TaskChange;
      }
      // The common patches (a status, a progress) are checked by hand; anything else by the schema.
      const keys = Object.keys(set);
      if (!(keys.length === 1 && keys[0] === "status" && STATUSES.has(set.status as string))) {
        set = collect(issues, [...path, "set"], () => parseOrThrow(PatchSetSchema, set)) ?? set;
      }
      for (const key of Object.keys(set)) {
        if ((PATCHABLE as readonly string[]).includes(key)) wellFormedDeep(set[key], [...path, "set", key], issues);
      }
      if (c.unset !== undefined) {
        if (!Array.isArray(c.unset) || c.unset.some((key) => !UNSETTABLE.has(key))) {
          issues.push({ path: [...path, "unset"], rule: "enum", message: "may name only description and assignedTo" });
        }
      }
      if (c.transition !== undefined) {
        const t = c.transition as { action?: unknown; from?: unknown } | null;
        if (!isPlainObject(t) || typeof t.action !== "string" || !Array.isArray(t.from) || t.from.some((s) => !STATUSES.has(s))) {
          issues.push({ path: [...path, "transition"], rule: "type", message: "must be { action, from: statuses[] }" });
        }
      }
      let mergeProgress = c.mergeProgress;
      if (mergeProgress !== undefined) {
        mergeProgress = collect(issues, [...path, "mergeProgress"], () => parseOrThrow(MergeProgressSchema, mergeProgress));
        wellFormedDeep(mergeProgress, [...path, "mergeProgress"], issues);
      }
      if (set === c.set && mergeProgress === c.mergeProgress) return change as TaskChange;
      return { ...(c as TaskChange & { type: "patch" }), set, ...(mergeProgress !== undefined ? { mergeProgress } : {}) } as TaskChange;
    }
    case "append": {
      id(c.id, [...path, "id"], issues);
      at(c.at, path, issues);
      if (!Array.isArray(c.entries)) {
        issues.push({ path: [...path, "entries"], rule: "type", message: "must be an array of log entries" });
        return change as TaskChange;
      }
      for (let i = 0; i < c.entries.length; i++) logEntry(c.entries[i], [...path, "entries", i], issues);
      return change as TaskChange;
    }
    case "link":
      id(c.parentId, [...path, "parentId"], issues);
      id(c.childId, [...path, "childId"], issues);
      at(c.at, path, issues);
      return change as TaskChange;
    case "remove":
      id(c.id, [...path, "id"], issues);
      at(c.at, path, issues);
      return change as TaskChange;
    default:
      issues.push({ path: [...path, "type"], rule: "enum", message: "must be create, put, patch, append, link or remove" });
      return change as TaskChange;
  }
}

/** One log entry, by hand: it is on the path of every `appendOutput`. */
function logEntry(entry: unknown, path: (string | number)[], issues: ValidationIssue[]): void {
  if (!isPlainObject(entry)) {
    issues.push({ path, rule: "type", message: "must be a log entry object" });
    return;
  }
  const { timestamp, output, type, source } = entry as Record<string, unknown>;
  if (typeof timestamp !== "number" || !Number.isInteger(timestamp) || timestamp < 0) {
    issues.push({ path: [...path, "timestamp"], rule: "type", message: "must be epoch milliseconds" });
  }
  text(output, [...path, "output"], LIMITS.logOutputLength, issues);
  if (typeof type !== "string" || !LOG_TYPES.has(type)) {
    issues.push({ path: [...path, "type"], rule: "enum", message: `must be one of ${[...LOG_TYPES].join(", ")}` });
  }
  if (source !== undefined) text(source, [...path, "source"], LIMITS.logSourceLength, issues);
}

function text(value: unknown, path: (string | number)[], max: number, issues: ValidationIssue[]): void {
  if (typeof value !== "string") {
    issues.push({ path, rule: "type", message: "must be a string" });
  } else if (value.length > max) {
    issues.push({ path, rule: `max ${max}`, message: `is ${value.length} characters, over the limit of ${max}` });
  } else {
    wellFormed(value, path, issues);
  }
}

function id(value: unknown, path: (string | number)[], issues: ValidationIssue[]): void {
  collect(issues, [], () => checkTaskId(value, String(path[path.length - 1])), path.slice(0, -1));
}

function at(value: unknown, path: (string | number)[], issues: ValidationIssue[]): void {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    issues.push({ path: [...path, "at"], rule: "type", message: "must be epoch milliseconds" });
  }
}

/** Runs a zod-backed check, moving its issues under `path`. */
function collect<T>(issues: ValidationIssue[], path: (string | number)[], check: () => T, prefix = path): T | undefined {
  try {
    return check();
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    for (const issue of error.issues) issues.push({ ...issue, path: [...prefix, ...issue.path] });
    return undefined;
  }
}

function wellFormedTask(task: StoredTask, path: (string | number)[], issues: ValidationIssue[]): void {
  for (const key of ["title", "description", "assignedTo"] as const) {
    const value = task[key];
    if (typeof value === "string") wellFormed(value, [...path, key], issues);
  }
  wellFormedDeep(task.progress, [...path, "progress"], issues);
  wellFormedDeep(task.metadata, [...path, "metadata"], issues);
  task.logs.forEach((entry, i) => {
    wellFormed(entry.output, [...path, "logs", i, "output"], issues);
    if (entry.source !== undefined) wellFormed(entry.source, [...path, "logs", i, "source"], issues);
  });
}

/** Every string in JSON data, keys included. */
function wellFormedDeep(value: unknown, path: (string | number)[], issues: ValidationIssue[]): void {
  if (typeof value === "string") {
    wellFormed(value, path, issues);
  } else if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) wellFormedDeep(value[i], [...path, i], issues);
  } else if (typeof value === "object" && value !== null) {
    for (const key of Object.keys(value)) {
      wellFormed(key, [...path, key], issues, "key");
      wellFormedDeep((value as Record<string, unknown>)[key], [...path, key], issues);
    }
  }
}

const hasWellFormed = typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === "function";
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function wellFormed(value: string, path: (string | number)[], issues: ValidationIssue[], what = "text"): void {
  if (hasWellFormed ? (value as string & { isWellFormed(): boolean }).isWellFormed() : !LONE_SURROGATE.test(value)) return;
  const index = value.search(LONE_SURROGATE);
  const unit = value.charCodeAt(index).toString(16).toUpperCase();
  issues.push({
    path,
    rule: "well_formed",
    message: `${what} has a lone surrogate (U+${unit}) at index ${index}; strings must be well-formed Unicode (String.prototype.toWellFormed() repairs one)`,
  });
}
