import type { LogEntry, StoredTask, TaskStatus } from "@taskstore/core";

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
  return { ...rest, logCount: logs.length };
}

/** `[██████░░░░]  60%`: a fixed-width bar. */
export function progressBar(percent: number, width = 20): string {
  const clamped = Math.max(0, Math.min(100, percent));
  const filled = Math.round((clamped / 100) * width);
  return `[${"█".repeat(filled)}${"░".repeat(width - filled)}] ${formatPercent(clamped).padStart(4)}`;
}

function formatPercent(percent: number): string {
  return `${Number.isInteger(percent) ? percent : percent.toFixed(1)}%`;
}

/**
 * The parent/child tree, children under their parent in creation order. A task whose parent is
 * not in `tasks` (filtered out, or missing) is drawn as a root.
 */
export function renderTree(tasks: StoredTask[]): string {
  const byId = new Map(tasks.map((task) => [task.id, task]));
  const childrenOf = new Map<string, StoredTask[]>();
  const roots: StoredTask[] = [];
  for (const task of tasks) {
    if (task.parentId !== undefined && byId.has(task.parentId) && task.parentId !== task.id) {
      const list = childrenOf.get(task.parentId) ?? [];
      list.push(task);
      childrenOf.set(task.parentId, list);
    } else roots.push(task);
  }
  const lines: string[] = [];
  const seen = new Set<string>();
  const walk = (task: StoredTask, lead: string, branch: string) => {
    if (seen.has(task.id)) return; // a damaged store with a cycle must not loop forever
    seen.add(task.id);
    lines.push(`${lead}${branch}${taskLine(task)}`);
    const kids = childrenOf.get(task.id) ?? [];
    const nextLead = lead + (branch === "" ? "" : branch === "└─ " ? "   " : "│  ");
    for (const [i, kid] of kids.entries()) walk(kid, nextLead, i === kids.length - 1 ? "└─ " : "├─ ");
  };
  for (const root of roots) walk(root, "", "");
  return lines.join("\n");
}

function taskLine(task: StoredTask): string {
  const parts = [`${STATUS_MARKS[task.status] ?? "?"} ${task.id}  ${task.title}  (${task.status})`];
  if (task.assignedTo) parts.push(`@${task.assignedTo}`);
  if (task.status === "running" || task.status === "paused") parts.push(progressText(task));
  return parts.join("  ");
}

function progressText(task: StoredTask): string {
  const p = task.progress;
  const parts = [progressBar(p.percent)];
  if (p.currentStep !== undefined)
    parts.push(p.totalSteps !== undefined ? `step ${p.currentStep}/${p.totalSteps}` : `step ${p.currentStep}`);
  if (p.estimatedTimeRemaining !== undefined) parts.push(`~${formatDuration(p.estimatedTimeRemaining)} left`);
  if (p.message) parts.push(`— ${p.message}`);
  return parts.join(" ");
}

/** `show`: every field, then the log. */
export function renderTask(task: StoredTask): string {
  const rows: [string, string][] = [
    ["id", task.id],
    ["title", task.title],
    ["status", `${STATUS_MARKS[task.status] ?? "?"} ${task.status}`],
    ["progress", progressText(task)],
  ];
  if (task.description) rows.push(["description", task.description]);
  if (task.parentId) rows.push(["parent", task.parentId]);
  if (task.children.length > 0) rows.push(["children", task.children.join(", ")]);
  if (task.assignedTo) rows.push(["assigned to", task.assignedTo]);
  if (Object.keys(task.metadata).length > 0) rows.push(["metadata", JSON.stringify(task.metadata)]);
  rows.push(["created", formatTime(task.createdAt)], ["updated", formatTime(task.updatedAt)]);
  const width = Math.max(...rows.map(([key]) => key.length));
  const lines = rows.map(([key, value]) => `${key.padEnd(width)}  ${value}`);
  const dropped = task.droppedLogCount ? ` (${task.droppedLogCount} older entries dropped by the log cap)` : "";
  lines.push("", `log: ${task.logs.length} ${task.logs.length === 1 ? "entry" : "entries"}${dropped}`);
  for (const entry of task.logs) lines.push(`  ${renderEntry(entry)}`);
  return lines.join("\n");
}

/** One log line: time, type, source, text. */
export function renderEntry(entry: LogEntry): string {
  const source = entry.source ? ` ${entry.source}:` : "";
  return `${formatTime(entry.timestamp)} [${entry.type}]${source} ${entry.output}`;
}

export function formatTime(ms: number): string {
  return new Date(ms).toISOString();
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
