import type { LogEntry, StoredTask, TaskStatus } from "@taskstore/core";
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

function markOf(task: StoredTask): string {
  return STATUS_MARKS[statusOf(task) as TaskStatus] ?? "?";
}

/** `[██████░░░░]  60%`: a fixed-width bar. */
export function progressBar(percent: number, width = 20): string {
  const clamped = Math.max(0, Math.min(100, Number.isFinite(percent) ? percent : 0));
  const filled = Math.round((clamped / 100) * width);
  return `[${"█".repeat(filled)}${"░".repeat(width - filled)}] ${formatPercent(clamped).padStart(4)}`;
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

/**
 * The parent/child tree, children under their parent in creation order. A task whose parent is
 * not in `tasks` (filtered out, or missing) is drawn as a root. Tasks caught in a parent cycle
 * have no root to hang from: each cycle is drawn from its first task as a root, after the rest,
 * its tasks marked "(cycle)" (`marked`: the ids to mark, from the whole store).
 */
export function renderTree(tasks: StoredTask[], marked: ReadonlySet<string> = new Set()): string {
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
  const lines: string[] = [];
  const seen = new Set<string>();
  const walk = (task: StoredTask, lead: string, branch: string) => {
    const id = idOf(task);
    if (seen.has(id)) return; // the link that closes a cycle: its task is drawn already
    seen.add(id);
    lines.push(`${lead}${branch}${taskLine(task)}${marked.has(id) ? "  (cycle)" : ""}`);
    const kids = (childrenOf.get(id) ?? []).filter((kid) => !seen.has(idOf(kid)));
    const nextLead = lead + (branch === "" ? "" : branch === "└─ " ? "   " : "│  ");
    for (const [i, kid] of kids.entries()) walk(kid, nextLead, i === kids.length - 1 ? "└─ " : "├─ ");
  };
  for (const root of roots) walk(root, "", "");
  // What is left hangs from a cycle among the tasks drawn: each cycle from its first task.
  const { member } = findCycles(tasks);
  for (const task of tasks) if (!seen.has(idOf(task)) && member.has(idOf(task))) walk(task, "", "");
  for (const task of tasks) walk(task, "", ""); // nothing should be left; never hide a task if it is
  return lines.join("\n");
}

function taskLine(task: StoredTask): string {
  const status = statusOf(task);
  const title = textOf((task as { title?: unknown }).title) ?? "(no title)";
  const parts = [`${markOf(task)} ${escapeText(idOf(task))}  ${escapeText(title)}  (${escapeText(status)})`];
  const assignedTo = textOf((task as { assignedTo?: unknown }).assignedTo);
  if (assignedTo) parts.push(`@${escapeText(assignedTo)}`);
  if (status === "running" || status === "paused") parts.push(progressText(task));
  return parts.join("  ");
}

function progressText(task: StoredTask): string {
  const raw = (task as { progress?: unknown }).progress;
  const p = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  const percent = numberOf(p.percent);
  const parts = [percent === undefined ? "(progress unknown)" : progressBar(percent)];
  const step = textOf(p.currentStep);
  const total = textOf(p.totalSteps);
  if (step !== undefined) parts.push(total !== undefined ? `step ${escapeText(step)}/${escapeText(total)}` : `step ${escapeText(step)}`);
  const eta = numberOf(p.estimatedTimeRemaining);
  if (eta !== undefined) parts.push(`~${formatDuration(eta)} left`);
  const message = textOf(p.message);
  if (message) parts.push(`— ${escapeText(message)}`);
  return parts.join(" ");
}

// ---------------------------------------------------------------------------------------------
// show

/** `show`: every field, then the log. `cycles` (of the whole store) adds what a parent cycle means for this task. */
export function renderTask(task: StoredTask, cycles?: CycleReport): string {
  const id = idOf(task);
  const title = textOf((task as { title?: unknown }).title);
  const rows: [string, string][] = [
    ["id", escapeText(id)],
    ["title", title === undefined ? "(no title)" : escapeText(title)],
    ["status", `${markOf(task)} ${escapeText(statusOf(task))}`],
    ["progress", progressText(task)],
  ];
  const description = textOf((task as { description?: unknown }).description);
  if (description) rows.push(["description", description]); // a block: escaped below, with its own indent
  const parentId = parentOf(task);
  if (parentId !== undefined) {
    const inCycle = cycles?.member.get(id);
    const underCycle = cycles?.under.get(id);
    const note = inCycle ? ` (cycle: ${formatCycle(inCycle)})` : underCycle ? ` (under a parent cycle: ${formatCycle(underCycle)})` : "";
    rows.push(["parent", `${escapeText(parentId)}${note}`]);
  }
  const children = (task as { children?: unknown }).children;
  if (Array.isArray(children) && children.length > 0)
    rows.push(["children", children.map((child) => escapeText(textOf(child))).join(", ")]);
  else if (children !== undefined && !Array.isArray(children)) rows.push(["children", escapeText(textOf(children))]);
  const assignedTo = textOf((task as { assignedTo?: unknown }).assignedTo);
  if (assignedTo) rows.push(["assigned to", escapeText(assignedTo)]);
  const metadata = (task as { metadata?: unknown }).metadata;
  const hasMetadata = typeof metadata === "object" && metadata !== null ? Object.keys(metadata).length > 0 : metadata !== undefined;
  if (hasMetadata) rows.push(["metadata", escapeText(textOf(metadata))]);
  rows.push(
    ["created", formatTime((task as { createdAt?: unknown }).createdAt)],
    ["updated", formatTime((task as { updatedAt?: unknown }).updatedAt)],
  );
  const width = Math.max(...rows.map(([key]) => key.length));
  const indent = " ".repeat(width + 2);
  const lines = rows.map(([key, value]) => `${key.padEnd(width)}  ${key === "description" ? escapeBlock(value, indent) : value}`);
  const logs = logsOf(task);
  const droppedCount = numberOf((task as { droppedLogCount?: unknown }).droppedLogCount);
  const dropped = droppedCount ? ` (${droppedCount} older entries dropped by the log cap)` : "";
  lines.push("", `log: ${logs.length} ${logs.length === 1 ? "entry" : "entries"}${dropped}`);
  for (const entry of logs) lines.push(`  ${renderEntry(entry, "      ")}`);
  return lines.join("\n");
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
