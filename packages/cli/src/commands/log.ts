import { EventBus, type LogEntry, type LogType, type StoredTask, TaskManager, TaskNotFoundError } from "@taskstore/core";
import { type Command, type Context, durationArg, notice, numberArg, output, stringArg, withManager, withStore } from "../command.js";
import { resolveId } from "../id-prefix.js";
import { LineSplitter, LogRecorder } from "../line-log.js";
import { idOf, logsOf, renderEntry } from "../render.js";
import { jsonText } from "../text.js";
import { UsageError } from "../usage-error.js";
import { loadTask } from "./view.js";

export const LOG_TYPES: LogType[] = ["stdout", "stderr", "log", "error", "info", "debug"];

export const log: Command = {
  name: "log",
  summary: "append to a task's log, print it, or follow it (--follow)",
  usage:
    "log <id> <text> [--type TYPE] [--source NAME] | log <id> --stdin [--type TYPE] [--source NAME] | log <id> [--lines N] [--follow [--interval DURATION]]",
  details: `Types: ${LOG_TYPES.join(", ")} (default log).
With text: appends one entry. With --stdin: appends each line read from stdin as an entry, while it
comes (make 2>&1 | taskstore log ID --stdin --type stdout), until stdin ends.
Without either: prints the log (the last N entries with --lines).
--follow prints the log, then each new entry as it arrives, until Ctrl-C (exit 0), or exit 3
if the task is deleted. Stores that notify changes (redis, postgres) are followed through their
notification (and polled every 10 intervals as a safety net); the others are polled every
--interval (default 500ms).
--json: appending prints { "id", "type", "output" }; --stdin prints { "id", "type", "entries" }; printing prints { "id", "entries", "droppedLogCount" };
following prints one JSON entry per line (NDJSON).`,
  options: {
    type: { type: "string", short: "t", value: "TYPE", description: "the entry's type (default log)", complete: LOG_TYPES },
    source: { type: "string", value: "NAME", description: "who wrote it (a tool, a sub-agent)" },
    stdin: { type: "boolean", description: "append each line of stdin as an entry, until stdin ends" },
    follow: { type: "boolean", short: "f", description: "keep printing new entries until Ctrl-C" },
    lines: { type: "string", short: "n", value: "N", description: "print only the last N existing entries" },
    interval: { type: "string", value: "DURATION", description: "how often --follow polls (default 500ms)" },
  },
  positionals: { min: 1, max: 2 },
  completes: ["id"],
  runsUntilInterrupted: (args) => args.values.follow === true && args.positionals.length === 1,
  async run(ctx, args) {
    const [id, text] = args.positionals as [string, string | undefined];
    const follow = args.values.follow === true;
    const lines = numberArg(stringArg(args, "lines"), "--lines", "log", { integer: true, min: 0 });
    if (args.values.stdin === true) {
      if (text !== undefined || follow || lines !== undefined)
        throw new UsageError("--stdin appends what stdin gives: no text, --follow or --lines", "log");
      const type = logType(stringArg(args, "type"));
      const source = stringArg(args, "source");
      const appended = await appendStdin(ctx, id, type, source);
      output(ctx, "", { id: appended.id, type, entries: appended.entries, ...(source !== undefined ? { source } : {}) });
      return;
    }
    if (text !== undefined) {
      if (follow || lines !== undefined) throw new UsageError("give either text to append, or --follow/--lines to read", "log");
      const type = (stringArg(args, "type") ?? "log") as LogType;
      const source = stringArg(args, "source");
      const full = await withManager(ctx, async (manager) => {
        const full = resolveId(manager, id);
        await manager.appendOutput(full, text, type, source);
        return full;
      });
      output(ctx, "", { id: full, type, output: text, ...(source !== undefined ? { source } : {}) });
      return;
    }
    if (stringArg(args, "type") !== undefined || stringArg(args, "source") !== undefined) {
      throw new UsageError("--type and --source go with text to append", "log");
    }
    if (follow) {
      await followLog(ctx, id, lines, durationArg(stringArg(args, "interval"), "--interval", "log") ?? 500);
      return;
    }
    const task = await loadTask(ctx, id);
    const logs = logsOf(task);
    const entries = lines === undefined ? logs : logs.slice(logs.length - lines);
    const dropped = typeof task.droppedLogCount === "number" ? task.droppedLogCount : 0;
    output(ctx, entries.map((entry) => renderEntry(entry)).join("\n"), { id: idOf(task), entries, droppedLogCount: dropped });
  },
};

function logType(raw: string | undefined): LogType {
  const type = (raw ?? "log") as LogType;
  if (!LOG_TYPES.includes(type)) throw new UsageError(`unknown log type "${raw}"; one of ${LOG_TYPES.join(", ")}`, "log");
  return type;
}

/** Appends each line of stdin to the task's log as it comes (a batch per write); resolves with the number of entries once stdin ends. */
async function appendStdin(
  ctx: Context,
  given: string,
  type: LogType,
  source: string | undefined,
): Promise<{ id: string; entries: number }> {
  return withManager(ctx, async (manager) => {
    const id = resolveId(manager, given);
    // The task must exist before anything is read: a typo fails at once, not at the first line.
    if (!manager.findById(id)) throw new TaskNotFoundError(id);
    const recorder = new LogRecorder(manager, id, { source });
    const lines = new LineSplitter((line) => recorder.add(type, line));
    await new Promise<void>((resolve, reject) => {
      ctx.stdin.on("data", (chunk: Buffer | string) => {
        lines.push(chunk);
        // Stop reading at the first failed write: the command fails with it.
        if (recorder.error !== undefined) reject(recorder.error);
      });
      ctx.stdin.on("end", () => {
        lines.end();
        resolve();
      });
      ctx.stdin.on("error", reject);
    });
    await recorder.drain();
    return { id, entries: recorder.written };
  });
}

/** Every entry ever appended, counting those the log cap dropped: how far a follower has got. */
function totalOf(task: StoredTask): number {
  return (task.droppedLogCount ?? 0) + task.logs.length;
}

async function followLog(ctx: Context, given: string, lines: number | undefined, intervalMs: number): Promise<void> {
  if (intervalMs < 10) throw new UsageError("--interval must be at least 10ms", "log");
  const print = (entry: LogEntry) => ctx.stdout.write(`${ctx.json ? jsonText(entry) : renderEntry(entry)}\n`);
  await withStore(ctx, async (store) => {
    const manager = new TaskManager(new EventBus(), store.repository);
    // Loads, and subscribes to the store's change notification where the driver has one.
    await manager.loadFromRepository();
    const id = resolveId(manager, given);
    const first = manager.findById(id);
    if (!first) throw new TaskNotFoundError(id);
    for (const entry of lines === undefined ? first.logs : first.logs.slice(first.logs.length - lines)) print(entry);
    let printed = totalOf(first);
    let stop!: (error?: unknown) => void;
    const stopped = new Promise<void>((resolve, reject) => {
      stop = (error) => (error ? reject(error) : resolve());
    });
    const check = () => {
      const task = manager.findById(id);
      if (!task) {
        stop(new TaskNotFoundError(id));
        return;
      }
      const total = totalOf(task);
      if (total > printed) {
        for (const entry of task.logs.slice(Math.max(0, task.logs.length - (total - printed)))) print(entry);
        printed = total;
      }
    };
    manager.eventBus.on("tasks:refreshed", check);
    let warned = false;
    const notifies = (await store.repository.capabilities()).changeNotification;
    const timer = setInterval(
      () => {
        manager.refresh().then(
          () => {
            if (warned) notice(ctx, "reachable", "the store is reachable again");
            warned = false;
          },
          (error: unknown) => {
            if (!warned) notice(ctx, "unreachable", `cannot read the store, still trying: ${(error as Error).message}`, {}, "warning");
            warned = true;
          },
        );
      },
      notifies ? intervalMs * 10 : intervalMs,
    );
    try {
      await Promise.race([stopped, ctx.interrupted, ctx.outputClosed]);
    } finally {
      clearInterval(timer);
      await manager.close();
    }
  });
}
