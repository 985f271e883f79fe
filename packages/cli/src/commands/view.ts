import { type StoredTask, TaskIdSchema, TaskNotFoundError, type TaskStatus, ValidationError } from "@taskstore/core";
import { type Command, type Context, notice, numberArg, output, stringArg, withStore } from "../command.js";
import { matchId } from "../id-prefix.js";
import { type CycleReport, drawTree, FINISHED, findCycles, formatCycle, idOf, readableTasks, renderTask, summarize } from "../render.js";
import { lookOf, paint } from "../terminal.js";
import { UsageError } from "../usage-error.js";

export const STATUSES: TaskStatus[] = ["pending", "running", "paused", "completed", "failed", "cancelled"];

export const SORTS = ["created", "updated", "status", "title"] as const;
type Sort = (typeof SORTS)[number];

/** Active first: what is moving, then what waits, then what needs a look, then what is done. */
const STATUS_ORDER = ["running", "paused", "pending", "failed", "completed", "cancelled"];

function comparer(sort: Sort): ((a: StoredTask, b: StoredTask) => number) | undefined {
  const created = (a: StoredTask, b: StoredTask) => numberField(a, "createdAt") - numberField(b, "createdAt");
  switch (sort) {
    case "created":
      return undefined; // the store's order is creation order
    case "updated":
      return (a, b) => numberField(b, "updatedAt") - numberField(a, "updatedAt") || created(a, b);
    case "status":
      return (a, b) => rank(a) - rank(b) || created(a, b);
    case "title":
      return (a, b) => String(a.title ?? "").localeCompare(String(b.title ?? ""), undefined, { sensitivity: "base" }) || created(a, b);
  }
}

function numberField(task: StoredTask, field: "createdAt" | "updatedAt"): number {
  const value = (task as Record<string, unknown>)[field];
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

function rank(task: StoredTask): number {
  const at = STATUS_ORDER.indexOf(String(task.status));
  return at === -1 ? STATUS_ORDER.length : at;
}

/** Every task under `rootId` (children, their children, ...), cycle-safe. */
export function descendantsOf(tasks: StoredTask[], rootId: string): StoredTask[] {
  const under = new Set<string>([rootId]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const task of tasks) {
      const parent = task.parentId;
      if (typeof parent === "string" && under.has(parent) && !under.has(idOf(task))) {
        under.add(idOf(task));
        grew = true;
      }
    }
  }
  return tasks.filter((task) => idOf(task) !== rootId && under.has(idOf(task)));
}

export const list: Command = {
  name: "list",
  summary: "the unfinished tasks as a parent/child tree (--all: every task)",
  usage: "list [--all] [--status STATUS]... [--assigned AGENT] [--parent ID] [--sort created|updated|status|title] [--limit N] [--ascii]",
  details: `Statuses: ${STATUSES.join(", ")}. Marks: ○ pending, ▶ running, ‖ paused, ✓ completed, ✗ failed, ⊘ cancelled
(ASCII: o > = + x -). Completed and cancelled tasks are hidden unless --all or --status asks for
them; failed ones are shown. With a filter, a task whose parent is filtered out is drawn as a root.
--parent ID draws the tasks under ID. --sort orders siblings: created (oldest first, the default),
updated (latest change first), status (running, paused, pending, failed, completed, cancelled),
title. --limit N draws the first N tasks. Colours follow NO_COLOR / FORCE_COLOR and whether
stdout is a terminal; lines fit the terminal's width (COLUMNS too); --ascii (or a locale that is
not UTF-8) draws with ASCII only.
--json prints { "tasks": [task without "logs", plus "logCount"] }: the same tasks, in creation
order (with --sort or --limit, in the order drawn).`,
  options: {
    all: { type: "boolean", description: "show completed and cancelled tasks too" },
    status: {
      type: "string",
      short: "s",
      multiple: true,
      value: "STATUS",
      description: "only tasks with this status; repeatable",
      complete: STATUSES,
    },
    assigned: { type: "string", value: "AGENT", description: "only tasks assigned to this agent" },
    parent: { type: "string", short: "p", value: "ID", description: "only the tasks under this one", complete: "id" },
    sort: { type: "string", value: "KEY", description: "order of siblings: created (default), updated, status, title", complete: SORTS },
    limit: { type: "string", short: "n", value: "N", description: "draw at most N tasks" },
    ascii: { type: "boolean", description: "ASCII marks and tree lines, whatever the locale" },
  },
  positionals: { min: 0, max: 0 },
  async run(ctx, args) {
    const statuses = (args.values.status as string[] | undefined) ?? [];
    for (const status of statuses) {
      if (!STATUSES.includes(status as TaskStatus))
        throw new UsageError(`unknown status "${status}"; one of ${STATUSES.join(", ")}`, "list");
    }
    const sortRaw = stringArg(args, "sort");
    if (sortRaw !== undefined && !SORTS.includes(sortRaw as Sort))
      throw new UsageError(`unknown sort "${sortRaw}"; one of ${SORTS.join(", ")}`, "list");
    const sort = (sortRaw ?? "created") as Sort;
    const limit = numberArg(stringArg(args, "limit"), "--limit", "list", { integer: true, min: 1 });
    const assigned = stringArg(args, "assigned");
    const all = args.values.all === true;
    const tasks = await loadTasks(ctx);
    const parentGiven = stringArg(args, "parent");
    let pool = tasks;
    if (parentGiven !== undefined) {
      const parentId = matchId(tasks, parentGiven);
      if (!tasks.some((task) => idOf(task) === parentId)) throw new TaskNotFoundError(parentId);
      pool = descendantsOf(tasks, parentId);
    }
    const matching = pool.filter(
      (task) => (statuses.length === 0 || statuses.includes(task.status)) && (assigned === undefined || task.assignedTo === assigned),
    );
    const hideFinished = !all && statuses.length === 0;
    const shown = hideFinished ? matching.filter((task) => !FINISHED.has(String(task.status))) : matching;
    const hidden = matching.length - shown.length;
    const cycles = warnCycles(ctx, tasks);
    const look = lookOf(ctx, { ascii: args.values.ascii === true });
    const { lines, order } = drawTree(shown, new Set(cycles.member.keys()), { look, compare: comparer(sort) });
    const kept = limit === undefined ? order : order.slice(0, limit);
    const notes: string[] = [];
    if (limit !== undefined && order.length > limit) notes.push(`${order.length - limit} more not shown: --limit ${limit}`);
    if (hidden > 0) notes.push(`${hidden} finished ${hidden === 1 ? "task" : "tasks"} hidden: --all shows ${hidden === 1 ? "it" : "them"}`);
    const text =
      shown.length === 0
        ? tasks.length === 0
          ? "no tasks yet: taskstore add <title>"
          : hidden > 0
            ? `no unfinished tasks (${hidden} finished: taskstore list --all)`
            : "no task matches"
        : [...lines.slice(0, kept.length), ...notes.map((note) => paint(look, "dim", `(${note})`))].join("\n");
    const ordered = sortRaw === undefined && limit === undefined ? shown : kept;
    output(ctx, text, { tasks: ordered.map(summarize) });
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
  completes: ["id"],
  async run(ctx, args) {
    const { task, tasks } = await loadTaskIn(ctx, args.positionals[0] as string);
    const id = idOf(task);
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
    const byId = new Map(tasks.map((one) => [idOf(one), one]));
    output(ctx, renderTask(task, cycles, { look: lookOf(ctx), byId }), task);
  },
};

/** Reads one task; a missing one is NOT_FOUND (exit 3). */
export async function loadTask(ctx: Context, id: string): Promise<StoredTask> {
  return (await loadTaskIn(ctx, id)).task;
}

/** Reads one task (by its id or a unique prefix of it), with the whole store it is in. */
async function loadTaskIn(ctx: Context, given: string): Promise<{ task: StoredTask; tasks: StoredTask[] }> {
  const checked = TaskIdSchema.safeParse(given);
  if (!checked.success) {
    throw new ValidationError([{ path: ["id"], rule: "pattern", message: checked.error.issues[0]?.message ?? "not a task id" }]);
  }
  const tasks = await loadTasks(ctx);
  const id = matchId(tasks, given);
  const task = tasks.find((candidate) => idOf(candidate) === id);
  if (!task) throw new TaskNotFoundError(id);
  return { task, tasks };
}
