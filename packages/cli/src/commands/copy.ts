import type { TaskChange } from "@taskstore/core";
import { type Command, type Context, output, stringArg, withStore } from "../command.js";
import { parseStoreUrl } from "../store-url.js";
import { TargetNotEmptyError, UsageError } from "../usage-error.js";

/** Tasks per atomic write: small enough for a live progress bar, large enough to be quick. */
const CHUNK = 200;

export const copy: Command = {
  name: "copy",
  summary: "copy every task, log and relation from one store to another",
  usage: "copy --to URL [--from URL] [--force | --merge]",
  details: `--from defaults to the store (--store / TASKSTORE_URL / the default file).
A target that already holds tasks is refused (exit 12) unless:
  --force  replace it: the target's tasks are deleted first, so it ends up holding exactly the source's
  --merge  keep the target's tasks; a source task with the same id overwrites the target's
Tasks are written in atomic batches of ${CHUNK}; an interrupted copy leaves the batches already written.
A progress bar goes to stderr when stderr is a terminal.
--json prints { "from", "to", "tasks", "logEntries", "mode" }.
Example: taskstore copy --from file:~/.config/kilocode/tasks.json --to sqlite:/var/lib/agent/tasks.db`,
  options: {
    from: { type: "string", value: "URL", description: "the source store (default: the store)" },
    to: { type: "string", value: "URL", description: "the target store" },
    force: { type: "boolean", description: "replace a non-empty target" },
    merge: { type: "boolean", description: "add to a non-empty target, overwriting same ids" },
  },
  positionals: { min: 0, max: 0 },
  async run(ctx, args) {
    const fromUrl = stringArg(args, "from") ?? ctx.storeUrl;
    const toUrl = stringArg(args, "to");
    if (toUrl === undefined) throw new UsageError("copy needs --to URL", "copy");
    const force = args.values.force === true;
    const merge = args.values.merge === true;
    if (force && merge) throw new UsageError("give --force or --merge, not both", "copy");
    // Parsed up front, so a bad target URL fails before the source is even opened.
    const fromDisplay = parseStoreUrl(fromUrl).display;
    const toSpec = parseStoreUrl(toUrl);
    if (fromDisplay === toSpec.display && fromDisplay !== "file: (default path)")
      throw new UsageError("--from and --to are the same store", "copy");

    const tasks = await withStore(ctx, (source) => source.repository.loadAll(), fromUrl);
    const summary = await withStore(
      ctx,
      async (target) => {
        const existing = await target.repository.loadAll();
        if (existing.length > 0 && !force && !merge) {
          throw new TargetNotEmptyError(
            `the target ${target.display} already holds ${existing.length} tasks: use --force to replace them or --merge to add to them`,
          );
        }
        if (force && existing.length > 0) {
          const at = Date.now();
          await target.repository.apply(
            existing.map((task): TaskChange => ({ type: "remove", id: task.id, at })),
            { operation: "copy" },
          );
        }
        const bar = progressReporter(ctx, tasks.length);
        for (let i = 0; i < tasks.length; i += CHUNK) {
          await target.repository.saveMany(tasks.slice(i, i + CHUNK));
          bar(Math.min(tasks.length, i + CHUNK));
        }
        bar.done();
        return {
          from: fromDisplay,
          to: target.display,
          tasks: tasks.length,
          logEntries: tasks.reduce((n, task) => n + task.logs.length, 0),
        };
      },
      toUrl,
    );
    const mode = force ? "replace" : merge ? "merge" : "new";
    output(ctx, `copied ${summary.tasks} tasks and ${summary.logEntries} log entries from ${summary.from} to ${summary.to}`, {
      ...summary,
      mode,
    });
  },
};

/** A one-line bar on stderr, redrawn in place; nothing at all when stderr is not a terminal. */
function progressReporter(ctx: Context, total: number): ((done: number) => void) & { done(): void } {
  const tty = ctx.stderr.isTTY === true;
  const draw = (done: number) => {
    if (!tty) return;
    const width = 30;
    const filled = total === 0 ? width : Math.round((done / total) * width);
    ctx.stderr.write(`\r[${"#".repeat(filled)}${" ".repeat(width - filled)}] ${done}/${total} tasks`);
  };
  return Object.assign(draw, {
    done() {
      if (tty) ctx.stderr.write("\n");
    },
  });
}
