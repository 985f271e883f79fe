import { EventBus, TaskManager, TaskStoreError } from "@taskstore/core";
import { type OpenStore, openStore } from "./open-store.js";
import { UsageError } from "./usage-error.js";

/** What every verb gets: the global options and where to write. */
export interface Context {
  /** `--store`, else `TASKSTORE_URL`, else undefined (the default JSON file). */
  storeUrl: string | undefined;
  json: boolean;
  lockTimeoutMs: number | undefined;
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  /** Resolves when the user asks to stop (SIGINT, SIGTERM): for verbs that run until stopped. */
  interrupted: Promise<void>;
}

export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  /** For help: the value's name, like "ID". */
  value?: string;
  description: string;
}

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
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
  run(ctx: Context, args: ParsedArgs): Promise<void>;
}

/** Prints a result: `json` as one JSON document with `--json`, else `text`. */
export function output(ctx: Context, text: string, json: unknown): void {
  if (ctx.json) ctx.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  else if (text !== "") ctx.stdout.write(`${text}\n`);
}

export function notice(ctx: Context, text: string): void {
  ctx.stderr.write(`taskstore: ${text}\n`);
}

/**
 * Opens the store, runs `work`, and closes the store, which waits until every change is durable.
 * A change that could not reach storage makes this throw (with the storage error's code), so a
 * verb never reports success for a write that is not stored.
 */
export async function withStore<T>(
  ctx: Context,
  work: (store: OpenStore) => Promise<T>,
  url: string | undefined = ctx.storeUrl,
): Promise<T> {
  const store = await openStore(url, { lockTimeoutMs: ctx.lockTimeoutMs });
  const { events } = store.repository;
  events.on("storage:recovered", ({ reason, result }) => {
    const aside = result.movedTo ? `; the unreadable store was kept as ${result.movedTo}` : "";
    notice(ctx, `${store.display} could not be read (${reason.message}); restored from ${result.restoredFrom}${aside}`);
  });
  events.on("storage:migrated", ({ tasks }) => notice(ctx, `converted the legacy todo store to the current format (${tasks} tasks)`));
  // A change queued after a failed first attempt and then refused by the stored state when it
  // was finally written (another process changed the task meanwhile) is dropped by core: the
  // command must fail, not exit 0 as if it had been written.
  let refused: unknown;
  events.on("persistence:conflict", ({ error }) => {
    refused ??= error;
  });
  let result: T | undefined;
  let failure: unknown;
  let worked = false;
  try {
    result = await work(store);
    worked = true;
  } catch (error) {
    failure = error;
  }
  try {
    await store.repository.close();
  } catch (error) {
    if (worked) {
      // The verb itself succeeded in memory, but its change is not in storage.
      const code = TaskStoreError.isInstance(error) ? error.code : "STORAGE_UNAVAILABLE";
      const message = error instanceof Error ? error.message : String(error);
      failure = new TaskStoreError(code, `${message} (nothing was written)`, { cause: error });
    } else failure ??= error;
  }
  if (failure === undefined && refused !== undefined) failure = refused;
  if (failure !== undefined) throw withStoreName(failure, store.display);
  return result as T;
}

/** A storage error names the store, so "connection refused" says which server. */
function withStoreName(error: unknown, display: string): unknown {
  if (!TaskStoreError.hasCode(error, "STORAGE_UNAVAILABLE") || error.message.includes(display)) return error;
  return new TaskStoreError("STORAGE_UNAVAILABLE", `the store ${display} is unavailable: ${error.message}`, { cause: error });
}

/** `withStore` with a `TaskManager` loaded from the store (for the verbs that change tasks). */
export function withManager<T>(ctx: Context, work: (manager: TaskManager, store: OpenStore) => Promise<T>): Promise<T> {
  return withStore(ctx, async (store) => {
    const manager = new TaskManager(new EventBus(), store.repository);
    await manager.refresh();
    try {
      return await work(manager, store);
    } finally {
      // Closing the manager closes the repository (flushing); withStore reports a failure.
      await manager.close().catch(() => undefined);
    }
  });
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
  const bad =
    raw.trim() === "" ||
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
