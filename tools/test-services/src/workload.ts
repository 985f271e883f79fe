import { fileURLToPath } from "node:url";
import { runNodeScript } from "./children.js";

/**
 * A driver as a child process loads it: this package depends on no driver, so the test passes the
 * built module's absolute URL, e.g. `import.meta.resolve("@taskstore/driver-sqlite")`.
 */
export interface WorkloadDriver {
  /** Absolute URL (or path) of the driver module. */
  module: string;
  /** Name of the driver class exported by it; constructed as `new Driver(options)`. */
  export: string;
  /** The driver's options, as JSON. */
  options: unknown;
}

export interface WorkloadOptions {
  /** Absolute URL of @taskstore/core as the driver sees it: `import.meta.resolve("@taskstore/core")`. */
  core: string;
  driver: WorkloadDriver;
  /** Child processes writing at the same time. */
  processes: number;
  /** TaskManager operations per process. */
  operations: number;
  /** Calls each process has in flight at once (1: one after the other). */
  concurrency: number;
  /** Per child process (default 240 s). */
  timeoutMs?: number;
}

/** A task as loaded from the store (the fields the check reads). */
export interface WorkloadTask {
  id: string;
  title: string;
  description?: string;
  status: string;
  parentId?: string;
  assignedTo?: string;
  progress: { percent: number; message?: string };
  metadata: Record<string, unknown>;
  children: string[];
  logs: { output: string }[];
}

/** What one process had acknowledged (every call resolved), as what the store must now hold. */
export interface WorkerReport {
  worker: number;
  acknowledged: number;
  /** This process's live tasks: id -> expected fields and exact log. */
  live: Record<
    string,
    { title: string; percent: number; status: string; lines: string[]; metadata: Record<string, unknown>; parentId: string | null }
  >;
  deleted: string[];
  /** Lines appended to the shared task, in call order. */
  sharedLines: string[];
  /** The last value this process gave its field of the shared task. */
  patched: { field: string; value: string } | null;
  /** persistence:error events seen (there must be none). */
  errors: string[];
}

export type WorkerJob = { core: string; driver: WorkloadDriver } & (
  | { mode: "seed" | "load" }
  | { mode: "work"; worker: number; sharedId: string; operations: number; concurrency: number }
);

export interface WorkloadResult {
  sharedId: string;
  reports: WorkerReport[];
  /** The store afterwards, loaded by a fresh process through TaskRepository.loadAll(). */
  tasks: WorkloadTask[];
  /** Every difference between what was acknowledged and what is stored; empty when nothing was lost. */
  problems: string[];
}

const WORKER = fileURLToPath(new URL("./workload-worker.js", import.meta.url));

async function runJob<T>(job: WorkerJob, timeoutMs: number): Promise<T> {
  const out = await runNodeScript(WORKER, [JSON.stringify(job)], { timeoutMs });
  return JSON.parse(out.trim().split("\n").at(-1) as string) as T;
}

/**
 * Creates a shared task, runs `processes` child processes that each make `operations` mixed
 * TaskManager calls on the one store (creates under the shared task and at top level, appends to
 * their own and to the shared task, progress, renames, start, deletes, and patches of one field
 * of the shared task per process), then loads the store in a fresh process and compares.
 */
export async function runWorkload(options: WorkloadOptions): Promise<WorkloadResult> {
  const timeoutMs = options.timeoutMs ?? 240_000;
  const base = { core: options.core, driver: options.driver };
  const sharedId = await runJob<string>({ ...base, mode: "seed" }, timeoutMs);
  const reports = await Promise.all(
    Array.from({ length: options.processes }, (_, worker) =>
      runJob<WorkerReport>(
        { ...base, mode: "work", worker, sharedId, operations: options.operations, concurrency: options.concurrency },
        timeoutMs,
      ),
    ),
  );
  const tasks = await runJob<WorkloadTask[]>({ ...base, mode: "load" }, timeoutMs);
  return { sharedId, reports, tasks, problems: checkWorkload(sharedId, reports, tasks, options.operations) };
}

/** JSON with object keys sorted: stores such as PostgreSQL's jsonb do not keep key order. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1))) : v,
  );
}

const same = (a: unknown, b: unknown) => canonical(a) === canonical(b);

function fieldOf(task: WorkloadTask, field: string): unknown {
  return field === "progress.message" ? task.progress.message : (task as unknown as Record<string, unknown>)[field];
}

/** Compares the reports with the stored tasks; returns the differences (at most 50). */
export function checkWorkload(sharedId: string, reports: WorkerReport[], tasks: WorkloadTask[], operations: number): string[] {
  const problems: string[] = [];
  const byId = new Map(tasks.map((task) => [task.id, task]));
  const shared = byId.get(sharedId);
  if (!shared) return [`the shared task ${sharedId} is missing`];
  const sharedOutputs = shared.logs.map((entry) => entry.output);
  const liveUnderShared = new Set<string>();
  let liveCount = 0;
  for (const report of reports) {
    const w = `worker ${report.worker}`;
    if (report.acknowledged !== operations) problems.push(`${w}: ${report.acknowledged} of ${operations} operations acknowledged`);
    for (const error of report.errors) problems.push(`${w}: persistence:error ${error}`);
    for (const [id, want] of Object.entries(report.live)) {
      liveCount++;
      if (want.parentId === sharedId) liveUnderShared.add(id);
      const task = byId.get(id);
      if (!task) {
        problems.push(`${w}: task ${id} is missing`);
        continue;
      }
      const got = {
        title: task.title,
        percent: task.progress.percent,
        status: task.status,
        lines: task.logs.map((entry) => entry.output),
        metadata: task.metadata,
        parentId: task.parentId ?? null,
      };
      if (!same(got, want)) problems.push(`${w}: task ${id} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
    }
    for (const id of report.deleted) if (byId.has(id)) problems.push(`${w}: deleted task ${id} is still stored`);
    // This worker's lines on the shared task: all there, once each, in its order.
    const mine = new Set(report.sharedLines);
    const stored = sharedOutputs.filter((line) => mine.has(line));
    if (!same(stored, report.sharedLines)) {
      problems.push(`${w}: shared task lines ${JSON.stringify(stored)}, expected ${JSON.stringify(report.sharedLines)}`);
    }
    if (report.patched) {
      // With more processes than fields, another one may have written the same field last.
      const values = reports.filter((other) => other.patched?.field === report.patched?.field).map((other) => other.patched?.value);
      const value = fieldOf(shared, report.patched.field);
      if (!values.includes(value as string)) problems.push(`${w}: shared ${report.patched.field} is ${JSON.stringify(value)}`);
    }
  }
  const sharedTotal = reports.reduce((sum, report) => sum + report.sharedLines.length, 0);
  if (sharedOutputs.length !== sharedTotal) problems.push(`the shared task has ${sharedOutputs.length} lines, expected ${sharedTotal}`);
  const children = new Set(shared.children);
  for (const id of liveUnderShared) if (!children.has(id)) problems.push(`${id} is not among the shared task's children`);
  for (const id of children) if (!liveUnderShared.has(id)) problems.push(`the shared task lists child ${id}, which is not a live task`);
  if (tasks.length !== liveCount + 1) problems.push(`the store holds ${tasks.length} tasks, expected ${liveCount + 1}`);
  return problems.length > 50 ? [...problems.slice(0, 50), `... and ${problems.length - 50} more`] : problems;
}
