/**
 * Stable error codes. Programs branch on `error.code`; messages may change between versions,
 * codes never do. The core README lists what each one means.
 */
export type ErrorCode =
  | "VALIDATION"
  | "NOT_FOUND"
  | "INVALID_TRANSITION"
  | "CYCLE"
  | "CONFLICT"
  | "LOCK_TIMEOUT"
  | "CORRUPT_DATA"
  | "VERSION_UNSUPPORTED"
  | "STORAGE_UNAVAILABLE"
  | "DRIVER_NOT_INSTALLED"
  | "UNSUPPORTED"
  | "CLOSED"
  | "ENCRYPTION";

const MARKER = Symbol.for("taskstore.error");

/**
 * The base of every error taskstore throws. Two copies of `@taskstore/core` in one program still
 * recognise each other's errors through `TaskStoreError.isInstance()`, which `instanceof` cannot.
 */
export class TaskStoreError extends Error {
  readonly [MARKER] = true;
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }

  /** True for any taskstore error, from this copy of the package or another. */
  static isInstance(value: unknown): value is TaskStoreError {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[MARKER] === true;
  }

  /** True when `value` is a taskstore error with this code. */
  static hasCode(value: unknown, code: ErrorCode): value is TaskStoreError {
    return TaskStoreError.isInstance(value) && value.code === code;
  }
}

/** One broken rule of the input: where (`path`) and which rule. */
export interface ValidationIssue {
  path: (string | number)[];
  rule: string;
  message: string;
}

/** Bad input. Nothing was written. */
export class ValidationError extends TaskStoreError {
  readonly issues: ValidationIssue[];
  constructor(issues: ValidationIssue[], options?: { cause?: unknown; subject?: string }) {
    const subject = options?.subject ? `${options.subject}: ` : "";
    const listed = issues.map((issue) => `${formatPath(issue.path)}: ${issue.message} (${issue.rule})`).join("; ");
    super("VALIDATION", `${subject}invalid input: ${listed}`, options);
    this.issues = issues;
  }
}

/** The task (or a task it refers to) does not exist in the store. */
export class TaskNotFoundError extends TaskStoreError {
  readonly taskId: string;
  constructor(taskId: string) {
    super("NOT_FOUND", `task ${taskId} does not exist`);
    this.taskId = taskId;
  }
}

/** A status change the state machine does not allow. Nothing was written. */
export class InvalidTransitionError extends TaskStoreError {
  readonly taskId: string;
  readonly from: string;
  readonly to: string;
  constructor(taskId: string, from: string, to: string, action: string) {
    super("INVALID_TRANSITION", `cannot ${action} task ${taskId}: it is ${from}, and ${action} needs ${allowedFrom(action)}`);
    this.taskId = taskId;
    this.from = from;
    this.to = to;
  }
}

function allowedFrom(action: string): string {
  switch (action) {
    case "start":
      return "a pending task";
    case "pause":
    case "complete":
      return "a running task";
    case "resume":
      return "a paused task";
    case "retry":
      return "a failed or cancelled task";
    default:
      return "a task that has not finished";
  }
}

/** A parent/child link that would make a task its own ancestor. */
export class CycleError extends TaskStoreError {
  constructor(parentId: string, childId: string) {
    super("CYCLE", `linking ${childId} under ${parentId} would make a cycle`);
  }
}

/** Optimistic concurrency gave up: the stored state kept changing under the write. */
export class ConflictError extends TaskStoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("CONFLICT", message, options);
  }
}

/** The store's lock could not be acquired in time. */
export class LockTimeoutError extends TaskStoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("LOCK_TIMEOUT", message, options);
  }
}

/** The stored data cannot be read as a taskstore store, and no usable backup could replace it. */
export class CorruptDataError extends TaskStoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("CORRUPT_DATA", message, options);
  }
}

/** The store was written by a newer major version of taskstore: readable, never written. */
export class VersionUnsupportedError extends TaskStoreError {
  readonly version: string;
  constructor(version: string, supported: string, options?: { unreadable?: string; cause?: unknown }) {
    super(
      "VERSION_UNSUPPORTED",
      options?.unreadable
        ? `the store has schema version ${version} and this taskstore (${supported}) cannot read it: ${options.unreadable} (upgrade taskstore)`
        : `the store has schema version ${version}; this taskstore writes ${supported} and refuses to write a newer major version (upgrade taskstore)`,
      options,
    );
    this.version = version;
  }
}

/** The backend could not be reached or failed an operation (I/O error, network, server down). */
export class StorageUnavailableError extends TaskStoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("STORAGE_UNAVAILABLE", message, options);
  }
}

/** A store URL or default needs a driver package that is not installed. */
export class DriverNotInstalledError extends TaskStoreError {
  readonly packageName: string;
  constructor(packageName: string, purpose: string, options?: { cause?: unknown }) {
    super("DRIVER_NOT_INSTALLED", `${purpose} needs ${packageName}: install it with \`npm install ${packageName}\``, options);
    this.packageName = packageName;
  }
}

/** The driver does not support what was asked (its capabilities say so). */
export class UnsupportedError extends TaskStoreError {
  constructor(message: string) {
    super("UNSUPPORTED", message);
  }
}

/** The repository or manager was closed. */
export class ClosedError extends TaskStoreError {
  constructor(what: string) {
    super("CLOSED", `${what} is closed`);
  }
}

/**
 * Errors that say the input or the stored state refuses the change. Retrying the same change
 * cannot help, so graceful degradation never queues them.
 */
export function isLogicalError(error: unknown): boolean {
  if (!TaskStoreError.isInstance(error)) return false;
  return [
    "VALIDATION",
    "NOT_FOUND",
    "INVALID_TRANSITION",
    "CYCLE",
    "CONFLICT",
    "VERSION_UNSUPPORTED",
    "UNSUPPORTED",
    "CLOSED",
    "ENCRYPTION",
  ].includes(error.code);
}

/** Wraps anything a driver threw into a TaskStoreError, keeping taskstore errors as they are. */
export function toStoreError(error: unknown, context: string): TaskStoreError {
  if (TaskStoreError.isInstance(error)) return error;
  const detail = error instanceof Error ? error.message : String(error);
  return new StorageUnavailableError(`${context}: ${detail}`, { cause: error });
}

export function formatPath(path: readonly (string | number)[]): string {
  if (path.length === 0) return "(value)";
  return path.map((part, i) => (typeof part === "number" ? `[${part}]` : i === 0 ? part : `.${part}`)).join("");
}
