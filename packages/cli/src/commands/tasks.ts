import { type StoredTask, TaskIdSchema, type TaskManager, TaskNotFoundError, type TaskStatus, ValidationError } from "@taskstore/core";
import {
  type Command,
  type Context,
  durationArg,
  notice,
  numberArg,
  output,
  type ParsedArgs,
  stringArg,
  withManager,
  withStore,
} from "../command.js";
import {
  type CycleReport,
  findCycles,
  formatCycle,
  idOf,
  progressBar,
  readableTasks,
  renderTask,
  renderTree,
  summarize,
} from "../render.js";
import { escapeText } from "../text.js";
import { UsageError } from "../usage-error.js";

const STATUSES: TaskStatus[] = ["pending", "running", "paused", "completed", "failed", "cancelled"];

export const add: Command = {
  name: "add",
  summary: "create a task and print its id",
  usage: "add <title> [--description TEXT] [--parent ID] [--assign AGENT] [--meta KEY=VALUE]... [--meta-json JSON]",
  details: 'Example: taskstore add "Build the project" --parent 01JX... --meta branch=main',
  options: {
    description: { type: "string", short: "d", value: "TEXT", description: "a longer description" },
    parent: { type: "string", short: "p", value: "ID", description: "make it a child of this task" },
    assign: { type: "string", short: "a", value: "AGENT", description: "assign it to an agent" },
    meta: { type: "string", multiple: true, value: "KEY=VALUE", description: "a metadata field (a string); repeatable" },
    "meta-json": { type: "string", value: "JSON", description: "metadata as a JSON object (merged under --meta)" },
  },
  positionals: { min: 1, max: 1 },
  async run(ctx, args) {
    const [title] = args.positionals as [string];
    const metadata = metadataOf(args);
    const description = stringArg(args, "description");
    const parentId = stringArg(args, "parent");
    const assignedTo = stringArg(args, "assign");
    const id = await withManager(ctx, (manager) =>
      manager.create({
        title,
        ...(description !== undefined ? { description } : {}),
        ...(parentId !== undefined ? { parentId } : {}),
        ...(assignedTo !== undefined ? { assignedTo } : {}),
        ...(metadata ? { metadata } : {}),
      }),
    );
    output(ctx, id, { id });
  },
};

function metadataOf(args: ParsedArgs): Record<string, unknown> | undefined {
  let metadata: Record<string, unknown> | undefined;
  const json = stringArg(args, "meta-json");
  if (json !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch (error) {
      throw new UsageError(`--meta-json is not valid JSON: ${(error as Error).message}`, "add");
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new UsageError("--meta-json must be a JSON object", "add");
    metadata = parsed as Record<string, unknown>;
  }
  for (const pair of (args.values.meta as string[] | undefined) ?? []) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new UsageError(`--meta takes KEY=VALUE, not "${pair}"`, "add");
    metadata ??= {};
    Object.defineProperty(metadata, pair.slice(0, at), { value: pair.slice(at + 1), enumerable: true, writable: true, configurable: true });
  }
  return metadata;
}

export const list: Command = {
  name: "list",
  summary: "the tasks as a parent/child tree, with a progress bar per running task",
  usage: "list [--status STATUS]... [--assigned AGENT]",
  details: `Statuses: ${STATUSES.join(", ")}. Marks: ○ pending, ▶ running, ‖ paused, ✓ completed, ✗ failed, ⊘ cancelled.
With a filter, a task whose parent is filtered out is drawn as a root.
--json prints { "tasks": [task without "logs", plus "logCount"] } in creation order.`,
  options: {
    status: { type: "string", short: "s", multiple: true, value: "STATUS", description: "only tasks with this status; repeatable" },
    assigned: { type: "string", value: "AGENT", description: "only tasks assigned to this agent" },
  },
  positionals: { min: 0, max: 0 },
  async run(ctx, args) {
    const statuses = (args.values.status as string[] | undefined) ?? [];
    for (const status of statuses) {
      if (!STATUSES.includes(status as TaskStatus))
        throw new UsageError(`unknown status "${status}"; one of ${STATUSES.join(", ")}`, "list");
    }
    const assigned = stringArg(args, "assigned");
    const tasks = await loadTasks(ctx);
    const shown = tasks.filter(
      (task) => (statuses.length === 0 || statuses.includes(task.status)) && (assigned === undefined || task.assignedTo === assigned),
    );
    const cycles = warnCycles(ctx, tasks);
    const text =
      shown.length === 0
        ? tasks.length === 0
          ? "no tasks yet: taskstore add <title>"
          : "no task matches"
        : renderTree(shown, new Set(cycles.member.keys()));
    output(ctx, text, { tasks: shown.map(summarize) });
  },
};

/** Every task of the store that can be drawn (a newer store's entries that are not tasks are counted, in a notice). */
export async function loadTasks(ctx: Context): Promise<StoredTask[]> {
  const loaded = await withStore(ctx, (store) => store.repository.loadAll());
  const { tasks, skipped } = readableTasks(loaded);
  if (skipped > 0) {
    const what = skipped === 1 ? "1 entry of the store is not a task and is" : `${skipped} entries of the store are not tasks and are`;
    notice(ctx, "skipped", `${what} not shown`, { skipped }, "warning");
  }
  return tasks;
}

/** Says, in a warning, which parent cycles the store holds (a hand-edited or older store may): their tasks are drawn, marked. */
function warnCycles(ctx: Context, tasks: StoredTask[]): CycleReport {
  const report = findCycles(tasks);
  if (report.cycles.length > 0) {
    notice(
      ctx,
      "cycle",
      `the store holds a parent cycle (each task, then its parent): ${report.cycles.map(formatCycle).join("; ")}; its tasks are drawn marked (cycle)`,
      { cycles: report.cycles, ids: [...report.member.keys()] },
      "warning",
    );
  }
  return report;
}

export const show: Command = {
  name: "show",
  summary: "one task with its log",
  usage: "show <id>",
  details: "--json prints the task exactly as stored, its log included.",
  options: {},
  positionals: { min: 1, max: 1 },
  async run(ctx, args) {
    const id = args.positionals[0] as string;
    const { task, tasks } = await loadTaskIn(ctx, id);
    const cycles = findCycles(tasks);
    const inCycle = cycles.member.get(id);
    const underCycle = cycles.under.get(id);
    if (inCycle)
      notice(ctx, "cycle", `task ${id} is in a parent cycle: ${formatCycle(inCycle)}`, { cycles: [inCycle], ids: inCycle }, "warning");
    else if (underCycle)
      notice(
        ctx,
        "cycle",
        `task ${id} is under a parent cycle: ${formatCycle(underCycle)}`,
        { cycles: [underCycle], ids: underCycle },
        "warning",
      );
    output(ctx, renderTask(task, cycles), task);
  },
};

/** Reads one task; a missing one is NOT_FOUND (exit 3). */
export async function loadTask(ctx: Context, id: string): Promise<StoredTask> {
  return (await loadTaskIn(ctx, id)).task;
}

/** Reads one task, with the whole store it is in. */
async function loadTaskIn(ctx: Context, id: string): Promise<{ task: StoredTask; tasks: StoredTask[] }> {
  const checked = TaskIdSchema.safeParse(id);
  if (!checked.success) {
    throw new ValidationError([{ path: ["id"], rule: "pattern", message: checked.error.issues[0]?.message ?? "not a task id" }]);
  }
  const tasks = await loadTasks(ctx);
  const task = tasks.find((candidate) => idOf(candidate) === id);
  if (!task) throw new TaskNotFoundError(id);
  return { task, tasks };
}

type Transition = "start" | "pause" | "resume" | "complete" | "fail" | "cancel" | "retry";

function statusVerb(
  name: Transition,
  summary: string,
  extra: { option?: string; description?: string; call: (manager: TaskManager, id: string, note: string | undefined) => Promise<void> },
): Command {
  return {
    name,
    summary,
    usage: `${name} <id>${extra.option ? ` [--${extra.option} TEXT]` : ""}`,
    details: `--json prints { "id", "status" }.`,
    options: extra.option ? { [extra.option]: { type: "string", value: "TEXT", description: extra.description ?? "" } } : {},
    positionals: { min: 1, max: 1 },
    async run(ctx, args) {
      const id = args.positionals[0] as string;
      const note = extra.option ? stringArg(args, extra.option) : undefined;
      const status = await withManager(ctx, async (manager) => {
        await extra.call(manager, id, note);
        return manager.findById(id)?.status;
      });
      output(ctx, `${id} ${status}`, { id, status });
    },
  };
}

export const start = statusVerb("start", "pending -> running", { call: (m, id) => m.start(id) });
export const pause = statusVerb("pause", "running -> paused", { call: (m, id) => m.pause(id) });
export const resume = statusVerb("resume", "paused -> running", { call: (m, id) => m.resume(id) });
export const complete = statusVerb("complete", "running -> completed (progress 100%)", { call: (m, id) => m.complete(id) });
export const fail = statusVerb("fail", "an unfinished task -> failed (the error goes to its log)", {
  option: "error",
  description: "what went wrong (appended to the log as an error entry)",
  call: (m, id, note) => m.fail(id, note),
});
export const cancel = statusVerb("cancel", "an unfinished task -> cancelled (the reason goes to its log)", {
  option: "reason",
  description: "why (appended to the log as an info entry)",
  call: (m, id, note) => m.cancel(id, note),
});
export const retry = statusVerb("retry", "a failed or cancelled task -> pending, at 0%", { call: (m, id) => m.retry(id) });

export const progress: Command = {
  name: "progress",
  summary: "set a task's progress",
  usage: "progress <id> <percent> [--step N|NAME] [--total N] [--eta DURATION] [--message TEXT]",
  details: `Example: taskstore progress 01JX... 40 --step 2 --total 5 --eta 90s --message "compiling"
DURATION is milliseconds or a number with ms, s, m or h. --json prints { "id", "progress" }.`,
  options: {
    step: { type: "string", value: "N|NAME", description: "the current step (a number or a name)" },
    total: { type: "string", value: "N", description: "the number of steps" },
    eta: { type: "string", value: "DURATION", description: "estimated time remaining" },
    message: { type: "string", short: "m", value: "TEXT", description: "what is happening now" },
  },
  positionals: { min: 2, max: 2 },
  async run(ctx, args) {
    const [id, rawPercent] = args.positionals as [string, string];
    const percent = numberArg(rawPercent, "percent", "progress", { min: 0, max: 100 }) as number;
    const stepRaw = stringArg(args, "step");
    const currentStep = stepRaw === undefined ? undefined : /^\d+$/.test(stepRaw) ? Number(stepRaw) : stepRaw;
    const totalSteps = numberArg(stringArg(args, "total"), "--total", "progress", { integer: true, min: 0 });
    const estimatedTimeRemaining = durationArg(stringArg(args, "eta"), "--eta", "progress");
    const message = stringArg(args, "message");
    const value = {
      percent,
      ...(currentStep !== undefined ? { currentStep } : {}),
      ...(totalSteps !== undefined ? { totalSteps } : {}),
      ...(estimatedTimeRemaining !== undefined ? { estimatedTimeRemaining } : {}),
      ...(message !== undefined ? { message } : {}),
    };
    await withManager(ctx, (manager) => manager.setProgress(id, value));
    output(ctx, `${id} ${progressBar(percent)}`, { id, progress: value });
  },
};

export const link: Command = {
  name: "link",
  summary: "make <child> a child of <parent> (moving it from any other parent)",
  usage: "link <parent> <child>",
  details: 'A link that would make a task its own ancestor is refused (exit 4). --json prints { "parentId", "childId" }.',
  options: {},
  positionals: { min: 2, max: 2 },
  async run(ctx, args) {
    const [parentId, childId] = args.positionals as [string, string];
    await withManager(ctx, (manager) => manager.linkParentChild(parentId, childId));
    output(ctx, `${childId} is now a child of ${parentId}`, { parentId, childId });
  },
};

export const assign: Command = {
  name: "assign",
  summary: "assign a task to an agent (or --none to unassign)",
  usage: "assign <id> <agent> | assign <id> --none",
  details: '--json prints { "id", "assignedTo" } (null when unassigned).',
  options: { none: { type: "boolean", description: "remove the assignment" } },
  positionals: { min: 1, max: 2 },
  async run(ctx, args) {
    const [id, agent] = args.positionals as [string, string | undefined];
    const none = args.values.none === true;
    if (none === (agent !== undefined)) throw new UsageError("give either an agent or --none", "assign");
    await withManager(ctx, (manager) => manager.assignAgent(id, { assignedTo: none ? null : (agent as string) }));
    output(ctx, none ? `${id} is unassigned` : `${id} is assigned to ${escapeText(agent)}`, { id, assignedTo: none ? null : agent });
  },
};

export const rm: Command = {
  name: "rm",
  summary: "delete a task and all its descendants",
  usage: "rm <id>",
  details: '--json prints { "removed": [ids] }.',
  options: {},
  positionals: { min: 1, max: 1 },
  async run(ctx, args) {
    const id = args.positionals[0] as string;
    const removed = await withManager(ctx, async (manager) => {
      let ids: string[] = [id];
      const off = manager.eventBus.on("task:deleted", (event) => {
        ids = event.ids;
      });
      await manager.delete(id);
      off();
      return ids;
    });
    output(ctx, `removed ${removed.length} ${removed.length === 1 ? "task" : "tasks"}: ${removed.join(", ")}`, { removed });
  },
};
