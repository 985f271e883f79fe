import { EventBus, StorageUnavailableError, TaskManager, TaskStoreError } from "@taskstore/core";
import type { StopSignal, WriteGate } from "./interrupt.js";
import { type OpenStore, openStore } from "./open-store.js";
import { escapeText, jsonText } from "./text.js";
import { isIoError, UsageError } from "./usage-error.js";

/** What every verb gets: the global options and where to write. */
export interface Context {
  /** `--store`, else `TASKSTORE_URL`, else undefined (the default JSON file). */
  storeUrl: string | undefined;
  json: boolean;
  lockTimeoutMs: number | undefined;
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  /** The user's environment (colours, locale, terminal width; what `run` gives its command). */
  env: NodeJS.ProcessEnv;
  /** Resolves when the user asks to stop (SIGINT, SIGTERM): for verbs that run until stopped. */
  interrupted: Promise<unknown>;
  /** Resolves when stdout's reader went away (a closed pipe): nobody reads what follows. */
  outputClosed: Promise<void>;
  /**
   * Takes SIGINT/SIGTERM over (they no longer stop the command) until the returned function is
   * called; throws `InterruptedError` when a signal already stopped it.
   */
  takeSignals(listener: (signal: StopSignal) => void): () => void;
  /** The command's writes, which an interrupt waits for or refuses. */
  gate: WriteGate;
}

export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  /** For help: the value's name, like "ID". */
  value?: string;
  description: string;
  /** What shell completion offers for the value: task ids, or a fixed list. */
  complete?: Completion;
}

/** What shell completion offers: task ids, verbs, or a fixed list of words. */
export type Completion = "id" | "verb" | readonly string[];

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
  /** What follows `--`, for a verb that `takesCommand`. */
  command?: string[];
}

/** A verb: its help, its options, and what it does. */
export interface Command {
  name: string;
  /** One line for the top-level help. */
  summary: string;
  /** The synopsis after `taskstore`, like "add <title> [options]". */
  usage: string;
  /** More help, examples. */
  details?: string;
  options: Record<string, OptionSpec>;
  positionals: { min: number; max: number };
  /** The verb takes a command line after `--` (`run -- make test`), given as `args.command`. */
  takesCommand?: boolean;
  /** Left out of the help's list of verbs (`__complete`). */
  hidden?: boolean;
  /** What shell completion offers for each positional argument, in order (none past the end). */
  completes?: (Completion | undefined)[];
  /**
   * True when this command line runs until the user stops it (`log --follow`) and ends by itself,
   * with exit 0, on SIGINT/SIGTERM (`ctx.interrupted`). Every other command is stopped by the
   * CLI: exit 130/143.
   */
  runsUntilInterrupted?(args: ParsedArgs): boolean;
  /** Does the work; may resolve with the exit code (`run`: the command's), anything but a number meaning 0. */
  run(ctx: Context, args: ParsedArgs): Promise<unknown>;
}

/** Prints a result: `json` as one JSON document with `--json`, else `text`. */
export function output(ctx: Context, text: string, json: unknown): void {
  if (ctx.json) ctx.stdout.write(`${jsonText(json, 2)}\n`);
  else if (text !== "") ctx.stdout.write(`${text}\n`);
}

/**
 * Something the user should know that is not the command's result: on stderr, as one line
 * (`taskstore: ...`, `taskstore: warning: ...`), or with `--json` as one JSON object per line,
 * `{"notice":{"type","message",...details}}`, so stderr stays machine-readable.
 */
export function notice(
  ctx: Context,
  type: string,
  text: string,
  details: Record<string, unknown> = {},
  level: "info" | "warning" = "info",
): void {
  if (ctx.json) ctx.stderr.write(`${jsonText({ notice: { type, level, message: text, ...details } })}\n`);
  else ctx.stderr.write(`taskstore: ${level === "warning" ? "warning: " : ""}${escapeText(text)}\n`);
}

export interface StoreOptions {
  /** The store (default: `ctx.storeUrl`). */
  url?: string | undefined;
  /**
   * The command changes the store: a storage failure (lock timeout, unreachable store, conflict)
   * then ends in "(nothing was written)". Its one write is atomic, and a failed write is never
   * retried later (the repository is opened with `degrade: false`), so that is true.
   */
  writes?: boolean;
}

/** Storage failures a writing command reports with "(nothing was written)". */
const NOTHING_WRITTEN_CODES = new Set(["LOCK_TIMEOUT", "STORAGE_UNAVAILABLE", "CONFLICT"]);

/**
 * Opens the store, runs `work`, and closes the store, which waits until every change is durable.
 * A change that could not reach storage makes this throw (with the storage error's code), so a
 * verb never reports success for a write that is not stored.
 */
export async function withStore<T>(ctx: Context, work: (store: OpenStore) => Promise<T>, options: StoreOptions = {}): Promise<T> {
  const url = "url" in options ? options.url : ctx.storeUrl;
  const store = await openStore(url, { lockTimeoutMs: ctx.lockTimeoutMs, gate: ctx.gate });
  const { events } = store.repository;
  events.on("storage:recovered", ({ reason, result }) => {
    const aside = result.movedTo ? `; the unreadable store was kept as ${result.movedTo}` : "";
    notice(ctx, "recovered", `${store.display} could not be read (${reason.message}); restored from ${result.restoredFrom}${aside}`, {
      store: store.display,
      reason: reason.message,
      restoredFrom: result.restoredFrom,
      ...(result.movedTo ? { movedTo: result.movedTo } : {}),
    });
  });
  events.on("storage:migrated", ({ tasks }) =>
    notice(ctx, "migrated", `converted the legacy todo store to the current format (${tasks} tasks)`, { store: store.display, tasks }),
  );
  // A change queued after a failed first attempt and then refused by the stored state when it
  // was finally written is dropped by core: the command must fail, not exit 0. (A command's
  // repository never queues a failed write, so this is a safety net.)
  let refused: unknown;
  events.on("persistence:conflict", ({ error }) => {
    refused ??= error;
  });
  let result: T | undefined;
  let failure: unknown;
  try {
    result = await work(store);
  } catch (error) {
    failure = error;
  }
  try {
    await store.repository.close();
  } catch (error) {
    failure ??= error;
  }
  if (failure === undefined && refused !== undefined) failure = refused;
  if (failure !== undefined) throw explain(failure, store.display, options.writes === true);
  return result as T;
}

/**
 * A failure as the command reports it: an I/O error a driver let through (a raw `ENOENT`, a
 * SQLite error) is the store being unavailable, never an "unexpected error"; a storage error
 * names the store, so "connection refused" says which server; a writing command's storage
 * failure says that nothing was written.
 */
function explain(error: unknown, display: string, writes: boolean): unknown {
  let failure = error;
  if (!TaskStoreError.isInstance(failure) && isIoError(failure)) {
    failure = new StorageUnavailableError((failure as Error).message, { cause: failure });
  }
  if (!TaskStoreError.isInstance(failure)) return failure;
  if (failure.code === "STORAGE_UNAVAILABLE" && !failure.message.includes(display)) {
    failure = new TaskStoreError("STORAGE_UNAVAILABLE", `the store ${display} is unavailable: ${failure.message}`, { cause: failure });
  }
  const current = failure as TaskStoreError;
  if (writes && NOTHING_WRITTEN_CODES.has(current.code) && !current.message.endsWith("(nothing was written)")) {
    failure = new TaskStoreError(current.code, `${current.message} (nothing was written)`, { cause: current });
  }
  return failure;
}

/** `withStore` with a `TaskManager` loaded from the store (for the verbs that change tasks). */
export function withManager<T>(ctx: Context, work: (manager: TaskManager, store: OpenStore) => Promise<T>): Promise<T> {
  return withStore(
    ctx,
    async (store) => {
      const manager = new TaskManager(new EventBus(), store.repository);
      await manager.refresh();
      try {
        return await work(manager, store);
      } finally {
        // Closing the manager closes the repository; withStore reports a failure.
        await manager.close().catch(() => undefined);
      }
    },
    { writes: true },
  );
}

export function stringArg(args: ParsedArgs, name: string): string | undefined {
  const value = args.values[name];
  return typeof value === "string" ? value : undefined;
}

/** A number option or positional; `what` names it in the error. */
export function numberArg(
  raw: string | undefined,
  what: string,
  verb: string,
  rule: { integer?: boolean; min?: number; max?: number } = {},
): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  // Decimal only: Number() would also take "0x10", "0b1", "1e1", " 16" and "Infinity".
  const bad =
    !/^-?\d+(\.\d+)?$/.test(raw) ||
    !Number.isFinite(value) ||
    (rule.integer && !Number.isInteger(value)) ||
    (rule.min !== undefined && value < rule.min) ||
    (rule.max !== undefined && value > rule.max);
  if (bad) {
    const range =
      rule.min !== undefined && rule.max !== undefined
        ? ` from ${rule.min} to ${rule.max}`
        : rule.min !== undefined
          ? ` of at least ${rule.min}`
          : "";
    throw new UsageError(`${what} must be ${rule.integer ? "an integer" : "a number"}${range}, not "${raw}"`, verb);
  }
  return value;
}

/** A duration: milliseconds, or a number with ms, s, m or h. */
export function durationArg(raw: string | undefined, what: string, verb: string): number | undefined {
  if (raw === undefined) return undefined;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim());
  if (!match) throw new UsageError(`${what} must be a duration like 1500, 30s, 5m or 1h, not "${raw}"`, verb);
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? "ms") as "ms"];
  return Math.round(Number(match[1]) * factor);
}
