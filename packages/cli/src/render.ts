import type { LogEntry, StoredTask, TaskStatus } from "@taskstore/core";
import { type Colour, type Look, paint, plainLook, relativeTime, truncate, widthOf } from "./terminal.js";
import { escapeBlock, escapeText } from "./text.js";

/**
 * Human output. Every string from task data goes through `escapeText`/`escapeBlock` (no control
 * character reaches the terminal), and every field is read defensively: a store written by a
 * newer version may hold tasks of a shape this version does not know (a missing title, an odd
 * status), and drawing them must never throw.
 */

/** One mark per status, so a tree reads at a glance. */
export const STATUS_MARKS: Record<TaskStatus, string> = {
  pending: "○",
  running: "▶",
  paused: "‖",
  completed: "✓",
  failed: "✗",
  cancelled: "⊘",
};

/** The marks where the terminal's locale is not UTF-8. */
export const ASCII_MARKS: Record<TaskStatus, string> = {
  pending: "o",
  running: ">",
  paused: "=",
  completed: "+",
  failed: "x",
  cancelled: "-",
};

const STATUS_COLOURS: Record<TaskStatus, Colour | undefined> = {
  pending: undefined,
  running: "cyan",
  paused: "yellow",
  completed: "green",
  failed: "red",
  cancelled: "gray",
};

/** Completed and cancelled tasks are done with; a failed one still asks for a retry or a cancel. */
export const FINISHED: ReadonlySet<string> = new Set(["completed", "cancelled"]);

const TREE = {
  unicode: { mid: "├─ ", last: "└─ ", through: "│  " },
  ascii: { mid: "|- ", last: "`- ", through: "|  " },
};

/** A task as `list --json` prints it: no log, only its length. */
export type TaskSummary = Omit<StoredTask, "logs"> & { logCount: number };

export function summarize(task: StoredTask): TaskSummary {
  const { logs, ...rest } = task;
  return { ...rest, logCount: Array.isArray(logs) ? logs.length : 0 };
}

/** Keeps the entries that are objects (tasks); a newer store's junk entries are counted, not drawn. */
export function readableTasks(tasks: unknown): { tasks: StoredTask[]; skipped: number } {
  const list = Array.isArray(tasks) ? tasks : [];
  const kept = list.filter((task): task is StoredTask => typeof task === "object" && task !== null && !Array.isArray(task));
  return { tasks: kept, skipped: list.length - kept.length };
}

/** A field as text: strings as they are, absent as undefined, anything else as JSON. */
function textOf(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

function numberOf(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

/** A task's id as text (a newer store's id may not be a string). */
export function idOf(task: StoredTask): string {
  return textOf((task as { id?: unknown }).id) ?? "(no id)";
}

function parentOf(task: StoredTask): string | undefined {
  return textOf((task as { parentId?: unknown }).parentId);
}

function statusOf(task: StoredTask): string {
  return textOf((task as { status?: unknown }).status) ?? "(no status)";
}

function markOf(task: StoredTask, look: Look = plainLook()): string {
  return (look.unicode ? STATUS_MARKS : ASCII_MARKS)[statusOf(task) as TaskStatus] ?? "?";
}

function colourOf(task: StoredTask): Colour | undefined {
  return STATUS_COLOURS[statusOf(task) as TaskStatus];
}

/** `[██████░░░░]  60%`: a fixed-width bar (`[######....]` in ASCII). */
export function progressBar(percent: number, width = 20, unicode = true): string {
  const clamped = Math.max(0, Math.min(100, Number.isFinite(percent) ? percent : 0));
  const filled = Math.round((clamped / 100) * width);
  const [full, empty] = unicode ? ["█", "░"] : ["#", "."];
  return `[${full.repeat(filled)}${empty.repeat(width - filled)}] ${formatPercent(clamped).padStart(4)}`;
}

function formatPercent(percent: number): string {
  return `${Number.isInteger(percent) ? percent : percent.toFixed(1)}%`;
}

// ---------------------------------------------------------------------------------------------
// Parent cycles

/** The parent cycles among `tasks`: each cycle's members, following parent links from its first member in `tasks` order. */
export interface CycleReport {
  /** Every cycle, as the ids met following parent links, from the cycle's first task in `tasks`. */
  cycles: string[][];
  /** A task in a cycle: the cycle, starting from that task. */
  member: Map<string, string[]>;
  /** A task not in a cycle whose ancestors lead into one: that cycle. */
  under: Map<string, string[]>;
}

/** Finds the parent cycles (a task that is its own ancestor) among `tasks`: a damaged or hand-edited store may hold one. */
export function findCycles(tasks: StoredTask[]): CycleReport {
  const parent = new Map<string, string | undefined>();
  for (const task of tasks) parent.set(idOf(task), parentOf(task));
  const cycles: string[][] = [];
  const member = new Map<string, string[]>();
  const under = new Map<string, string[]>();
  /** The cycle each task is in or under, as first recorded. */
  const reaches = new Map<string, string[]>();
  const done = new Set<string>();
  for (const task of tasks) {
    const start = idOf(task);
    if (done.has(start)) continue;
    const path: string[] = [];
    const onPath = new Set<string>();
    let at: string | undefined = start;
    while (at !== undefined && parent.has(at) && !done.has(at) && !onPath.has(at)) {
      path.push(at);
      onPath.add(at);
      at = parent.get(at);
    }
    let reached: string[] | undefined;
    if (at !== undefined && onPath.has(at)) {
      const cycle = path.slice(path.indexOf(at));
      cycles.push(cycle);
      for (const [i, id] of cycle.entries()) member.set(id, [...cycle.slice(i), ...cycle.slice(0, i)]);
      reached = cycle;
    } else if (at !== undefined) reached = reaches.get(at);
    for (const id of path) {
      done.add(id);
      if (!reached) continue;
      reaches.set(id, reached);
      if (!member.has(id)) under.set(id, reached);
    }
  }
  return { cycles, member, under };
}

/** `a → b → a`: a cycle as the parent links run (each task, then its parent). */
export function formatCycle(cycle: string[]): string {
  return [...cycle, cycle[0] as string].map(escapeText).join(" → ");
}

// ---------------------------------------------------------------------------------------------
// list

/** How `list` draws: the look, and the order of siblings (default: as given, i.e. creation order). */
export interface TreeOptions {
  look?: Look;
  compare?: (a: StoredTask, b: StoredTask) => number;
}

/**
 * The parent/child tree, children under their parent in creation order (or `compare`'s). A task
 * whose parent is not in `tasks` (filtered out, or missing) is drawn as a root. Tasks caught in a
 * parent cycle have no root to hang from: each cycle is drawn from its first task as a root,
 * after the rest, its tasks marked "(cycle)" (`marked`: the ids to mark, from the whole store).
 * Returns one line a task, and the tasks in the order drawn.
 */
export function drawTree(
  tasks: StoredTask[],
  marked: ReadonlySet<string> = new Set(),
  options: TreeOptions = {},
): { lines: string[]; order: StoredTask[] } {
  const look = options.look ?? plainLook();
  const branches = look.unicode ? TREE.unicode : TREE.ascii;
  const ids = new Set(tasks.map(idOf));
  const childrenOf = new Map<string, StoredTask[]>();
  const roots: StoredTask[] = [];
  for (const task of tasks) {
    const id = idOf(task);
    const parentId = parentOf(task);
    if (parentId !== undefined && ids.has(parentId) && parentId !== id) {
      const list = childrenOf.get(parentId) ?? [];
      list.push(task);
      childrenOf.set(parentId, list);
    } else roots.push(task);
  }
  const sorted = (list: StoredTask[]) => (options.compare ? [...list].sort(options.compare) : list);
  const lines: string[] = [];
  const order: StoredTask[] = [];
  const seen = new Set<string>();
  const walk = (task: StoredTask, lead: string, branch: string) => {
    const id = idOf(task);
    if (seen.has(id)) return; // the link that closes a cycle: its task is drawn already
    seen.add(id);
    order.push(task);
    lines.push(taskLine(task, look, lead + branch, marked.has(id)));
    const kids = sorted(childrenOf.get(id) ?? []).filter((kid) => !seen.has(idOf(kid)));
    const nextLead = lead + (branch === "" ? "" : branch === branches.last ? "   " : branches.through);
    for (const [i, kid] of kids.entries()) walk(kid, nextLead, i === kids.length - 1 ? branches.last : branches.mid);
  };
  for (const root of sorted(roots)) walk(root, "", "");
  // What is left hangs from a cycle among the tasks drawn: each cycle from its first task.
  const { member } = findCycles(tasks);
  for (const task of tasks) if (!seen.has(idOf(task)) && member.has(idOf(task))) walk(task, "", "");
  for (const task of tasks) walk(task, "", ""); // nothing should be left; never hide a task if it is
  return { lines, order };
}

/** `drawTree`'s lines as one text. */
export function renderTree(tasks: StoredTask[], marked: ReadonlySet<string> = new Set(), options: TreeOptions = {}): string {
  return drawTree(tasks, marked, options).lines.join("\n");
}

/** The narrowest a title is cut to before the rest of the line gives way. */
const MIN_TITLE = 12;

/**
 * One task of the tree: `lead` (the tree lines), mark, id, title, status, assignee, progress of
 * a running or paused task, and when it last changed. On a terminal of known width the line is
 * fitted: the title is cut first (down to a dozen columns), then the progress bar narrows and its
 * message goes; a line that still does not fit is left to wrap rather than lose the id.
 */
function taskLine(task: StoredTask, look: Look, lead: string, marked: boolean): string {
  const status = statusOf(task);
  const colour = colourOf(task);
  const mark = markOf(task, look);
  const id = escapeText(idOf(task));
  const title = escapeText(textOf((task as { title?: unknown }).title) ?? "(no title)");
  const statusText = `(${escapeText(status)})`;
  const assignedTo = textOf((task as { assignedTo?: unknown }).assignedTo);
  const active = status === "running" || status === "paused";
  const age = relativeTime(look, (task as { updatedAt?: unknown }).updatedAt);
  const cycle = marked ? "(cycle)" : "";
  // What the line shows beside the title, from everything down to the least.
  const levels = [
    { barWidth: 20, message: true, eta: true, age: true },
    { barWidth: 10, message: true, eta: true, age: true },
    { barWidth: 10, message: false, eta: true, age: true },
    { barWidth: 10, message: false, eta: false, age: true },
    { barWidth: 0, message: false, eta: false, age: true },
    { barWidth: 0, message: false, eta: false, age: false },
  ];
  const compose = (titleText: string, level: (typeof levels)[number], painted: boolean) => {
    const p = (c: Colour | undefined, text: string) => (painted ? paint(look, c, text) : text);
    const parts = [`${lead}${p(colour, mark)} ${id}`, titleText, p(colour, statusText)];
    if (assignedTo) parts.push(`@${escapeText(assignedTo)}`);
    if (active) parts.push(progressText(task, look, level));
    if (age && level.age) parts.push(p("dim", age));
    if (cycle) parts.push(p("yellow", cycle));
    return parts.join("  ");
  };
  let level = levels[0] as (typeof levels)[number];
  let titleText = title;
  if (look.columns !== undefined && widthOf(compose(title, level, false)) > look.columns) {
    const least = Math.min(MIN_TITLE, widthOf(title));
    for (const candidate of levels) {
      level = candidate;
      const room = look.columns - widthOf(compose("", level, false));
      titleText = truncate(look, title, Math.max(room, least));
      if (room >= least) break;
    }
  }
  return compose(titleText, level, true);
}

/** A task's progress: bar, step, time left (not for a finished task: nothing is left), message. */
function progressText(task: StoredTask, look: Look, options: { barWidth?: number; message?: boolean; eta?: boolean } = {}): string {
  const raw = (task as { progress?: unknown }).progress;
  const p = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  const percent = numberOf(p.percent);
  const barWidth = options.barWidth ?? 20;
  const parts = [
    percent === undefined
      ? "(progress unknown)"
      : barWidth === 0
        ? formatPercent(Math.max(0, Math.min(100, percent)))
        : progressBar(percent, barWidth, look.unicode),
  ];
  const step = textOf(p.currentStep);
  const total = textOf(p.totalSteps);
  if (step !== undefined && options.eta !== false)
    parts.push(total !== undefined ? `step ${escapeText(step)}/${escapeText(total)}` : `step ${escapeText(step)}`);
  const eta = numberOf(p.estimatedTimeRemaining);
  if (eta !== undefined && options.eta !== false && !isFinished(task)) parts.push(`~${formatDuration(eta)} left`);
  const message = textOf(p.message);
  if (message && options.message !== false) parts.push(`${look.unicode ? "—" : "-"} ${escapeText(message)}`);
  return parts.join(" ");
}

/** Completed, failed or cancelled: nothing more will happen to it by itself. */
function isFinished(task: StoredTask): boolean {
  const status = statusOf(task);
  return status === "completed" || status === "failed" || status === "cancelled";
}

// ---------------------------------------------------------------------------------------------
// show

/** What `show` draws with: the look, and the store's tasks by id (to name the children). */
export interface ShowOptions {
  look?: Look;
  byId?: ReadonlyMap<string, StoredTask>;
}

/** `show`: every field, then the log. `cycles` (of the whole store) adds what a parent cycle means for this task. */
export function renderTask(task: StoredTask, cycles?: CycleReport, options: ShowOptions = {}): string {
  const look = options.look ?? plainLook();
  const id = idOf(task);
  const title = textOf((task as { title?: unknown }).title);
  const rows: [string, string][] = [
    ["id", escapeText(id)],
    ["title", title === undefined ? "(no title)" : escapeText(title)],
    ["status", paint(look, colourOf(task), `${markOf(task, look)} ${escapeText(statusOf(task))}`)],
    ["progress", progressText(task, look)],
  ];
  const description = textOf((task as { description?: unknown }).description);
  if (description) rows.push(["description", description]); // a block: escaped below, with its own indent
  const parentId = parentOf(task);
  if (parentId !== undefined) {
    const inCycle = cycles?.member.get(id);
    const underCycle = cycles?.under.get(id);
    const note = inCycle ? ` (cycle: ${formatCycle(inCycle)})` : underCycle ? ` (under a parent cycle: ${formatCycle(underCycle)})` : "";
    const parent = options.byId?.get(parentId);
    const named = parent ? `  ${escapeText(textOf((parent as { title?: unknown }).title) ?? "(no title)")}` : "";
    rows.push(["parent", `${escapeText(parentId)}${named}${note}`]);
  }
  const children = (task as { children?: unknown }).children;
  if (Array.isArray(children) && children.length > 0)
    rows.push(["children", children.map((child) => childLine(child, look, options.byId)).join("\n")]);
  else if (children !== undefined && !Array.isArray(children)) rows.push(["children", escapeText(textOf(children))]);
  const assignedTo = textOf((task as { assignedTo?: unknown }).assignedTo);
  if (assignedTo) rows.push(["assigned to", escapeText(assignedTo)]);
  const metadata = (task as { metadata?: unknown }).metadata;
  const hasMetadata = typeof metadata === "object" && metadata !== null ? Object.keys(metadata).length > 0 : metadata !== undefined;
  if (hasMetadata) rows.push(["metadata", escapeText(textOf(metadata))]);
  for (const [key, field] of [
    ["created", "createdAt"],
    ["updated", "updatedAt"],
  ] as const) {
    const at = (task as Record<string, unknown>)[field];
    const ago = relativeTime(look, at);
    rows.push([key, `${formatTime(at)}${ago ? ` (${ago})` : ""}`]);
  }
  const width = Math.max(...rows.map(([key]) => key.length));
  const indent = " ".repeat(width + 2);
  const lines = rows.map(([key, value]) => {
    // The description is task text (escaped here, its own line breaks kept); children are lines made here.
    const shown = key === "description" ? escapeBlock(value, indent) : key === "children" ? value.split("\n").join(`\n${indent}`) : value;
    return `${key.padEnd(width)}  ${shown}`;
  });
  const logs = logsOf(task);
  const droppedCount = numberOf((task as { droppedLogCount?: unknown }).droppedLogCount);
  const dropped = droppedCount ? ` (${droppedCount} older entries dropped by the log cap)` : "";
  lines.push("", `log: ${logs.length} ${logs.length === 1 ? "entry" : "entries"}${dropped}`);
  for (const entry of logs) lines.push(`  ${renderEntry(entry, "      ")}`);
  return lines.join("\n");
}

/** A child of `show`: its mark, id and title (or "(missing)" when the store has no such task). */
function childLine(child: unknown, look: Look, byId: ReadonlyMap<string, StoredTask> | undefined): string {
  const id = textOf(child) ?? "";
  const task = byId?.get(id);
  if (!byId) return escapeText(id);
  if (!task) return `? ${escapeText(id)}  (missing)`;
  const title = textOf((task as { title?: unknown }).title) ?? "(no title)";
  return `${paint(look, colourOf(task), markOf(task, look))} ${escapeText(id)}  ${escapeText(title)}`;
}

/** A task's log entries (the objects among them). */
export function logsOf(task: StoredTask): LogEntry[] {
  const logs = (task as { logs?: unknown }).logs;
  if (!Array.isArray(logs)) return [];
  return logs.filter((entry): entry is LogEntry => typeof entry === "object" && entry !== null);
}

/**
 * One log entry: time, type, source, text. The text's own line breaks are kept, each following
 * line starting with `indent` (by default four spaces), so it cannot pass for another entry,
 * which starts with its time at the start of the line.
 */
export function renderEntry(entry: LogEntry, indent = "    "): string {
  const source = textOf((entry as { source?: unknown }).source);
  const type = textOf((entry as { type?: unknown }).type) ?? "?";
  const output = textOf((entry as { output?: unknown }).output) ?? "";
  return `${formatTime((entry as { timestamp?: unknown }).timestamp)} [${escapeText(type)}]${source ? ` ${escapeText(source)}:` : ""} ${escapeBlock(output, indent)}`;
}

export function formatTime(ms: unknown): string {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "(unknown time)";
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? "(unknown time)" : date.toISOString();
}

export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ""}`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
