import { z } from "zod";
import { ValidationError, type ValidationIssue } from "./errors.js";
import { isValidStoreAsIs } from "./load-check.js";

/** The schema version this taskstore writes. */
export const SCHEMA_VERSION = "1.0.0";

/**
 * Size limits on what may be stored. They keep one task from growing without bound and a hostile
 * input from filling the store. Documented in the core README; changing one is a breaking change.
 */
export const LIMITS = Object.freeze({
  /** Ids are 1-128 characters of `[A-Za-z0-9_-]`. */
  idLength: 128,
  titleLength: 1_000,
  descriptionLength: 100_000,
  assignedToLength: 256,
  /** Nesting depth of `metadata` (the top-level object is depth 1). */
  metadataDepth: 16,
  /** `metadata` serialized as JSON, in UTF-16 code units. */
  metadataSize: 256 * 1024,
  /** One log entry's `output`, in UTF-16 code units. */
  logOutputLength: 256 * 1024,
  logSourceLength: 256,
  progressTextLength: 1_000,
  /** Default per-task log cap: older entries beyond it are dropped and counted. */
  defaultLogCap: 10_000,
});

const ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

export const TaskIdSchema = z.string().regex(ID_PATTERN, "must be 1-128 characters of A-Z, a-z, 0-9, '_' or '-'");

export const TaskStatusSchema = z.enum(["pending", "running", "paused", "completed", "failed", "cancelled"]);
export type TaskStatus = z.infer<typeof TaskStatusSchema>;

export const LogTypeSchema = z.enum(["stdout", "stderr", "log", "error", "info", "debug"]);
export type LogType = z.infer<typeof LogTypeSchema>;

const timestamp = z.number().int().nonnegative();

export const TaskProgressSchema = z.object({
  percent: z.number().min(0).max(100),
  /** A step number, or the step's name. */
  currentStep: z.union([z.number().int().nonnegative(), z.string().max(LIMITS.progressTextLength)]).optional(),
  totalSteps: z.number().int().nonnegative().optional(),
  /** Milliseconds. */
  estimatedTimeRemaining: z.number().nonnegative().optional(),
  message: z.string().max(LIMITS.progressTextLength).optional(),
});
export type TaskProgress = z.infer<typeof TaskProgressSchema>;

export const LogEntrySchema = z.object({
  timestamp,
  output: z.string().max(LIMITS.logOutputLength),
  type: LogTypeSchema,
  source: z.string().max(LIMITS.logSourceLength).optional(),
});
export type LogEntry = z.infer<typeof LogEntrySchema>;

/**
 * Metadata is JSON data only: no functions, symbols, BigInts, NaN, Infinity, class instances or
 * cycles, bounded in depth and size. The parsed copy holds `__proto__` and `constructor` as plain
 * own keys, so they never reach a prototype.
 */
export const MetadataSchema = z.custom<Record<string, unknown>>().transform((value, ctx) => {
  const issues: ValidationIssue[] = [];
  if (!isPlainObject(value)) {
    issues.push({ path: [], rule: "type", message: "must be a plain object" });
  }
  const copy = issues.length === 0 ? copyJson(value, [], 1, issues, new Set()) : undefined;
  if (issues.length === 0) {
    const size = JSON.stringify(copy).length;
    if (size > LIMITS.metadataSize) {
      issues.push({ path: [], rule: "max_size", message: `is ${size} characters as JSON, over the limit of ${LIMITS.metadataSize}` });
    }
  }
  for (const issue of issues) ctx.addIssue({ code: "custom", path: issue.path, message: issue.message, params: { rule: issue.rule } });
  return (copy ?? {}) as Record<string, unknown>;
});

export const StoredTaskSchema = z.object({
  id: TaskIdSchema,
  title: z.string().min(1).max(LIMITS.titleLength),
  description: z.string().max(LIMITS.descriptionLength).optional(),
  status: TaskStatusSchema,
  parentId: TaskIdSchema.optional(),
  assignedTo: z.string().max(LIMITS.assignedToLength).optional(),
  progress: TaskProgressSchema,
  metadata: MetadataSchema,
  createdAt: timestamp,
  updatedAt: timestamp,
  children: z.array(TaskIdSchema),
  logs: z.array(LogEntrySchema),
  /** How many of this task's oldest log entries the log cap dropped; absent when none. */
  droppedLogCount: z.number().int().nonnegative().optional(),
});
export type StoredTask = z.infer<typeof StoredTaskSchema>;

export const StorageDataSchema = z.object({
  version: z.string().regex(/^\d+\.\d+\.\d+$/, "must be a semantic version like 1.0.0"),
  tasks: z.array(StoredTaskSchema),
  metadata: z.object({
    lastUpdated: timestamp,
    totalTasks: z.number().int().nonnegative(),
  }),
});
export type StorageData = z.infer<typeof StorageDataSchema>;

/** A task without its log: what incremental drivers write as one record. */
export type TaskBody = Omit<StoredTask, "logs">;

/** A task as incremental drivers read it: everything but the log, plus the log's length. */
export type TaskHead = TaskBody & { logCount: number };

// ---------------------------------------------------------------------------------------------
// Parsing that keeps what a newer minor version added.

/**
 * Validates `input` against `schema` and returns the parsed value, or throws a ValidationError
 * that names every failing field path and rule.
 */
export function parseOrThrow<S extends z.ZodType>(schema: S, input: unknown, subject?: string): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw new ValidationError(toIssues(result.error), { cause: result.error, ...(subject ? { subject } : {}) });
}

/** Checks one task id; a bad one throws a ValidationError whose issue path is `[field]`. */
export function checkTaskId(id: unknown, field = "id"): string {
  // The common case costs one regex test; only a bad id builds the detailed error.
  if (typeof id === "string" && ID_PATTERN.test(id)) return id;
  return parseOrThrow(z.object({ [field]: TaskIdSchema }), { [field]: id })[field] as string;
}

/** Parses a task, keeping fields this version does not know (a newer minor version wrote them). */
export function parseStoredTask(input: unknown, subject?: string): StoredTask {
  const task = parseOrThrow(StoredTaskSchema, input, subject);
  keepUnknown(input, task, StoredTaskSchema.shape);
  if (Array.isArray((input as { logs?: unknown }).logs)) {
    const raw = (input as { logs: unknown[] }).logs;
    task.logs.forEach((entry, i) => {
      keepUnknown(raw[i], entry, LogEntrySchema.shape);
    });
  }
  return task;
}

/**
 * Parses a whole store, keeping unknown fields at every level. A store that passes as it is
 * (nearly every load) is returned as it is, checked by hand (`load-check.ts`); anything else goes
 * through zod, which returns a parsed copy or names what fails.
 */
export function parseStorageData(input: unknown): StorageData {
  if (isValidStoreAsIs(input)) return input as StorageData;
  const data = parseOrThrow(StorageDataSchema.omit({ tasks: true }).extend({ tasks: z.array(z.unknown()) }), input, "store");
  const tasks = data.tasks.map((task, i) => {
    try {
      return parseStoredTask(task);
    } catch (error) {
      if (error instanceof ValidationError) {
        throw new ValidationError(
          error.issues.map((issue) => ({ ...issue, path: ["tasks", i, ...issue.path] })),
          { cause: error, subject: "store" },
        );
      }
      throw error;
    }
  });
  const parsed: StorageData = { ...data, tasks };
  keepUnknown(input, parsed, StorageDataSchema.shape);
  keepUnknown((input as { metadata?: unknown }).metadata, parsed.metadata, StorageDataSchema.shape.metadata.shape);
  return parsed;
}

function keepUnknown(input: unknown, output: object, known: object): void {
  if (!isPlainObject(input)) return;
  for (const key of Object.keys(input)) {
    if (Object.hasOwn(known, key)) continue;
    Object.defineProperty(output, key, { value: input[key], enumerable: true, writable: true, configurable: true });
  }
}

// ---------------------------------------------------------------------------------------------

/** Splits a semantic version into numbers; undefined when it is not one. */
export function parseVersion(version: string): [number, number, number] | undefined {
  const match = /^(\d+)\.(\d+)\.(\d+)$/.exec(version);
  if (!match) return undefined;
  return [Number(match[1]), Number(match[2]), Number(match[3])];
}

const OUR_MAJOR = (parseVersion(SCHEMA_VERSION) as [number, number, number])[0];

/** True when data of `version` may be written by this taskstore (same major version). */
export function isWritableVersion(version: string): boolean {
  // Asked twice per write, nearly always about SCHEMA_VERSION itself.
  if (version === SCHEMA_VERSION) return true;
  const parsed = parseVersion(version);
  return parsed !== undefined && parsed[0] === OUR_MAJOR;
}

/** The newer of two versions: writing back a newer minor version keeps its number. */
export function newerVersion(a: string, b: string): string {
  const pa = parseVersion(a);
  const pb = parseVersion(b);
  if (!pa) return b;
  if (!pb) return a;
  for (let i = 0; i < 3; i++) {
    if ((pa[i] as number) !== (pb[i] as number)) return (pa[i] as number) > (pb[i] as number) ? a : b;
  }
  return a;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function copyJson(value: unknown, path: (string | number)[], depth: number, issues: ValidationIssue[], seen: Set<object>): unknown {
  if (issues.length >= 20) return undefined;
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (!Number.isFinite(value)) issues.push({ path, rule: "finite", message: `${value} is not a finite number` });
      return value;
    case "object": {
      if (value === null) return null;
      if (depth > LIMITS.metadataDepth) {
        issues.push({ path, rule: "max_depth", message: `nests deeper than ${LIMITS.metadataDepth} levels` });
        return undefined;
      }
      if (seen.has(value)) {
        issues.push({ path, rule: "cycle", message: "refers to itself" });
        return undefined;
      }
      seen.add(value);
      let out: unknown;
      if (Array.isArray(value)) {
        out = value.map((item, i) => copyJson(item, [...path, i], depth + 1, issues, seen));
      } else if (isPlainObject(value)) {
        const copy: Record<string, unknown> = {};
        for (const key of Object.keys(value)) {
          const item = copyJson(value[key], [...path, key], depth + 1, issues, seen);
          // defineProperty, not assignment: a "__proto__" key stays a plain own key.
          Object.defineProperty(copy, key, { value: item, enumerable: true, writable: true, configurable: true });
        }
        if (Object.getOwnPropertySymbols(value).length > 0) {
          issues.push({ path, rule: "json", message: "has symbol keys, which JSON cannot hold" });
        }
        out = copy;
      } else {
        issues.push({ path, rule: "json", message: `is a ${value.constructor?.name ?? "non-plain object"}, not plain JSON data` });
      }
      seen.delete(value);
      return out;
    }
    default:
      // undefined, function, symbol, bigint
      issues.push({ path, rule: "json", message: `is a ${typeof value}, which is not JSON data` });
      return undefined;
  }
}

function toIssues(error: z.ZodError): ValidationIssue[] {
  return error.issues.map((issue) => {
    const params = (issue as { params?: { rule?: string } }).params;
    let rule: string = issue.code;
    if (params?.rule) rule = params.rule;
    else if (issue.code === "too_big") rule = `max ${String((issue as { maximum?: unknown }).maximum)}`;
    else if (issue.code === "too_small") rule = `min ${String((issue as { minimum?: unknown }).minimum)}`;
    else if (issue.code === "invalid_format") rule = "format";
    return { path: issue.path.map((p) => (typeof p === "symbol" ? String(p) : p)), rule, message: issue.message };
  });
}
