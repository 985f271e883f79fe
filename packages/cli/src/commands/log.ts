import { EventBus, type LogEntry, type LogType, type StoredTask, TaskManager, TaskNotFoundError } from "@taskstore/core";
import { type Command, type Context, durationArg, notice, numberArg, output, stringArg, withStore } from "../command.js";
import { logsOf, renderEntry } from "../render.js";
import { jsonText } from "../text.js";
import { UsageError } from "../usage-error.js";
import { loadTask } from "./tasks.js";

const LOG_TYPES: LogType[] = ["stdout", "stderr", "log", "error", "info", "debug"];

export const log: Command = {
  name: "log",
  summary: "append to a task's log, print it, or follow it (--follow)",
  usage: "log <id> <text> [--type TYPE] [--source NAME] | log <id> [--lines N] [--follow [--interval DURATION]]",
  details: `Types: ${LOG_TYPES.join(", ")} (default log).
With text: appends one entry. Without: prints the log (the last N entries with --lines).
--follow prints the log, then each new entry as it arrives, until Ctrl-C (exit 0), or exit 3
if the task is deleted. Stores that notify changes (redis, postgres) are followed through their
notification (and polled every 10 intervals as a safety net); the others are polled every
--interval (default 500ms).
--json: appending prints { "id", "type", "output" }; printing prints { "id", "entries", "droppedLogCount" };
following prints one JSON entry per line (NDJSON).`,
  options: {
    type: { type: "string", short: "t", value: "TYPE", description: "the entry's type (default log)" },
    source: { type: "string", value: "NAME", description: "who wrote it (a tool, a sub-agent)" },
    follow: { type: "boolean", short: "f", description: "keep printing new entries until Ctrl-C" },
    lines: { type: "string", short: "n", value: "N", description: "print only the last N existing entries" },
    interval: { type: "string", value: "DURATION", description: "how often --follow polls (default 500ms)" },
  },
  positionals: { min: 1, max: 2 },
  runsUntilInterrupted: (args) => args.values.follow === true && args.positionals.length === 1,
  async run(ctx, args) {
    const [id, text] = args.positionals as [string, string | undefined];
    const follow = args.values.follow === true;
    const lines = numberArg(stringArg(args, "lines"), "--lines", "log", { integer: true, min: 0 });
    if (text !== undefined) {
      if (follow || lines !== undefined) throw new UsageError("give either text to append, or --follow/--lines to read", "log");
      const type = (stringArg(args, "type") ?? "log") as LogType;
      const source = stringArg(args, "source");
      await withStore(
        ctx,
        async (store) => {
          const manager = new TaskManager(new EventBus(), store.repository);
          await manager.refresh();
          try {
            await manager.appendOutput(id, text, type, source);
          } finally {
            await manager.close().catch(() => undefined); // withStore closes the repository and reports its failure
          }
        },
        { writes: true },
      );
      output(ctx, "", { id, type, output: text, ...(source !== undefined ? { source } : {}) });
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
    output(ctx, entries.map((entry) => renderEntry(entry)).join("\n"), { id, entries, droppedLogCount: dropped });
  },
};

/** Every entry ever appended, counting those the log cap dropped: how far a follower has got. */
function totalOf(task: StoredTask): number {
  return (task.droppedLogCount ?? 0) + task.logs.length;
}

async function followLog(ctx: Context, id: string, lines: number | undefined, intervalMs: number): Promise<void> {
  if (intervalMs < 10) throw new UsageError("--interval must be at least 10ms", "log");
  const print = (entry: LogEntry) => ctx.stdout.write(`${ctx.json ? jsonText(entry) : renderEntry(entry)}\n`);
  await withStore(ctx, async (store) => {
    const manager = new TaskManager(new EventBus(), store.repository);
    // Loads, and subscribes to the store's change notification where the driver has one.
    await manager.loadFromRepository();
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
      await Promise.race([stopped, ctx.interrupted]);
    } finally {
      clearInterval(timer);
      await manager.close();
    }
  });
}
