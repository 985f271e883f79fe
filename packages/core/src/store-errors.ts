import os from "node:os";
import type { TaskStoreError } from "./errors.js";
import { redactText } from "./store-url.js";

/*
 * Errors recorded with the store, so that `diagnose` in any process (a CLI run next to an agent)
 * sees what went wrong in every process that used it, not only its own. They live in the store's
 * metadata under one reserved key, which every driver keeps like any unknown metadata field
 * (the conformance suite's compat group proves it), so no driver writes code for them.
 */

/** The key of `StorageData.metadata` that holds the errors. Reserved: applications must not write it. */
export const RECENT_ERRORS_KEY = "recentErrors";

/** How many errors a store keeps: the newest. */
export const STORED_ERRORS_KEPT = 50;

/** Longer messages are cut here. */
const MESSAGE_MAX = 500;

/** An error recorded with the store by one of the processes that used it. Never task content, never a credential. */
export interface StoredError {
  /** When it happened (epoch ms). */
  at: number;
  code: string;
  /** What was being done, like "create", "appendOutput, setProgress", "load" or "background". */
  operation: string;
  /** The message with credentials masked and quoted data left out, at most 500 characters. */
  message: string;
  /** The process that met it. */
  pid: number;
  host: string;
}

/**
 * The codes that say how the store is doing. A caller's own mistakes (VALIDATION, NOT_FOUND,
 * INVALID_TRANSITION, CYCLE, CLOSED, UNSUPPORTED) stay in the process's metrics only.
 */
const STORED_CODES: ReadonlySet<string> = new Set([
  "CONFLICT",
  "LOCK_TIMEOUT",
  "CORRUPT_DATA",
  "VERSION_UNSUPPORTED",
  "STORAGE_UNAVAILABLE",
  "ENCRYPTION",
]);

/** `name=value` and `name: value` where the name says secret; `Bearer <token>`. */
const SECRET_ASSIGNMENT =
  /(\b[\w.-]*(?:pass(?:word|wd)?|secret|token|credential|auth|(?:api|access|private|session)[_-]?key)[\w.-]*["']?\s*[=:]\s*["']?)[^\s&;,"']+/gi;
const BEARER = /\b(Bearer|Basic)\s+[A-Za-z0-9+/._~=-]+/g;
/** Quoted text in a message is data (JSON.parse and zod quote what they read): never stored. */
const QUOTED = /"[^"\n]*"|(?<!\w)'[^'\n]*'(?!\w)/g;

/** A message fit to store: URL passwords (`redactText`) and secret assignments masked, quoted data dropped, cut to length. */
export function storableMessage(message: string): string {
  const masked = redactText(message)
    .replace(BEARER, "$1 ***")
    .replace(SECRET_ASSIGNMENT, "$1***")
    .replace(QUOTED, (quoted) => `${quoted[0]}…${quoted[0]}`);
  return masked.length > MESSAGE_MAX ? `${masked.slice(0, MESSAGE_MAX - 1)}…` : masked;
}

/** A sealed message (see `UnwrittenErrors`) opened with `open`; without keys that open it, it says so. */
export function openedMessage(message: string, open: ((text: string) => string) | undefined): string {
  if (!message.startsWith("tse1.")) return message;
  if (!open) return "(sealed: the store is encrypted and no key was given)";
  try {
    return open(message);
  } catch {
    return "(sealed with a key that was not given)";
  }
}

/** The errors a store holds (its `metadata.recentErrors`), oldest first; anything malformed is left out. */
export function storedErrorsOf(metadata: unknown): StoredError[] {
  const list = typeof metadata === "object" && metadata !== null ? (metadata as Record<string, unknown>)[RECENT_ERRORS_KEY] : undefined;
  if (!Array.isArray(list)) return [];
  const errors: StoredError[] = [];
  for (const item of list) {
    if (typeof item !== "object" || item === null) continue;
    const { at, code, operation, message, pid, host } = item as Record<string, unknown>;
    if (typeof at !== "number" || !Number.isFinite(at) || typeof code !== "string" || typeof message !== "string") continue;
    errors.push({
      at,
      code,
      operation: typeof operation === "string" ? operation : "",
      message,
      pid: typeof pid === "number" ? pid : 0,
      host: typeof host === "string" ? host : "",
    });
  }
  return errors.sort((a, b) => a.at - b.at);
}

const identity = (error: StoredError) => `${error.at}|${error.pid}|${error.host}|${error.code}|${error.operation}|${error.message}`;

/** The newest `STORED_ERRORS_KEPT` of both lists, oldest first, each error once. */
export function mergeStoredErrors(stored: readonly StoredError[], added: readonly StoredError[]): StoredError[] {
  const seen = new Set<string>();
  const all: StoredError[] = [];
  for (const error of [...stored, ...added]) {
    const key = identity(error);
    if (seen.has(key)) continue;
    seen.add(key);
    all.push(error);
  }
  return all.sort((a, b) => a.at - b.at).slice(-STORED_ERRORS_KEPT);
}

/**
 * This process's errors that are not in the store yet. The repository adds them to its next
 * write of the store and forgets them once that write is durable, so errors met while storage
 * was down are recorded when it comes back.
 */
export class UnwrittenErrors {
  private pending: StoredError[] = [];
  private readonly host = os.hostname();

  /**
   * `seal`, on an encrypted store: messages are stored sealed like task text, since a message can
   * still name what it read (a metadata key in a schema path), and the store's envelope is in clear.
   */
  constructor(private readonly seal?: (text: string) => string) {}

  /** Keeps `error` for the store, when its code says something about the store. */
  note(error: TaskStoreError, operation: string): void {
    if (!STORED_CODES.has(error.code)) return;
    this.pending.push({
      at: Date.now(),
      code: error.code,
      operation,
      message: this.seal ? this.seal(storableMessage(error.message)) : storableMessage(error.message),
      pid: process.pid,
      host: this.host,
    });
    if (this.pending.length > STORED_ERRORS_KEPT) this.pending.shift();
  }

  get size(): number {
    return this.pending.length;
  }

  /** The errors to write now (the store's, plus this process's) and the ones of this process it includes. */
  mergeInto(metadata: Record<string, unknown>): StoredError[] {
    const taken = [...this.pending];
    metadata[RECENT_ERRORS_KEY] = mergeStoredErrors(storedErrorsOf(metadata), taken);
    return taken;
  }

  /** Forgets `taken` once the write that carried them is durable. */
  written(taken: readonly StoredError[]): void {
    const done = new Set(taken);
    this.pending = this.pending.filter((error) => !done.has(error));
  }

  /** A copy of what is not written yet, oldest first. */
  list(): StoredError[] {
    return this.pending.map((error) => ({ ...error }));
  }
}
