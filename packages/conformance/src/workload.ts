import type { TaskManager } from "@taskstore/core";
import { type ChildDriver, runChild } from "./child-driver.js";

/*
 * The multi-process workload: P child processes make N mixed TaskManager calls each on one store
 * (creates under a shared task and at top level, appends to their own tasks and to the shared
 * one, progress, renames, starts, deletes, and patches of one field of the shared task each),
 * then a fresh process loads the store and it is compared with what every process had
 * acknowledged: nothing lost, nothing applied twice.
 */

export interface WorkloadOptions {
  driver: ChildDriver;
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

/** What one process had acknowledged (every call that resolved), as what the store must now hold. */
export interface WorkerReport {
  worker: number;
  /** Calls that resolved (counted as they resolved, not as they were asked for). */
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

export interface WorkloadResult {
  sharedId: string;
  reports: WorkerReport[];
  /** The store afterwards, loaded by a fresh process through TaskRepository.loadAll(). */
  tasks: WorkloadTask[];
  /** Every difference between what was acknowledged and what is stored; empty when nothing was lost. */
  problems: string[];
}

/** Runs the workload; see the comment at the top of this file. */
export async function runWorkload(options: WorkloadOptions): Promise<WorkloadResult> {
  const timeoutMs = options.timeoutMs ?? 240_000;
  const sharedId = await runChild<string>({ driver: options.driver, mode: "seed" }, timeoutMs);
  const reports = await Promise.all(
    Array.from({ length: options.processes }, (_, worker) =>
      runChild<WorkerReport>(
        { driver: options.driver, mode: "work", worker, sharedId, operations: options.operations, concurrency: options.concurrency },
        timeoutMs,
      ),
    ),
  );
  const tasks = await runChild<WorkloadTask[]>({ driver: options.driver, mode: "load" }, timeoutMs);
  return { sharedId, reports, tasks, problems: checkWorkload(sharedId, reports, tasks, options.operations) };
}

/** The job of one workload process (in `child.js`). */
export async function runWorker(
  manager: TaskManager,
  job: { worker: number; sharedId: string; operations: number; concurrency: number },
): Promise<WorkerReport> {
  const errors: string[] = [];
  manager.eventBus.on("persistence:error", ({ error }) => errors.push(`${error.code}: ${error.message}`));
  return work(manager, errors, job.worker, job.sharedId, job.operations, job.concurrency);
}

/** Each worker patches one field of the shared task: with four workers, each its own. */
const FIELDS = ["title", "description", "assignedTo", "progress.message"] as const;

async function work(
  manager: TaskManager,
  errors: string[],
  worker: number,
  sharedId: string,
  operations: number,
  concurrency: number,
): Promise<WorkerReport> {
  let acknowledged = 0;
  const counted = (call: Promise<unknown>) =>
    call.then(() => {
      acknowledged++;
    });
  const own: string[] = []; // ids of this worker's live tasks, oldest first
  const live: WorkerReport["live"] = {};
  const deleted: string[] = [];
  const sharedLines: string[] = [];
  const field = FIELDS[worker % FIELDS.length] as (typeof FIELDS)[number];
  let patched: string | null = null;
  // Expectations are recorded when a call is made: TaskManager applies calls in call order.
  const create = (i: number, underShared: boolean): Promise<unknown> => {
    const title = `w${worker}-${i}`;
    const metadata = { worker, i };
    return manager.create({ title, metadata, ...(underShared ? { parentId: sharedId } : {}) }).then((id) => {
      own.push(id);
      live[id] = { title, percent: 0, status: "pending", lines: [], metadata, parentId: underShared ? sharedId : null };
    });
  };
  const appendShared = (i: number): Promise<unknown> => {
    sharedLines.push(`w${worker}-${i}`);
    return manager.appendOutput(sharedId, `w${worker}-${i}`, "stdout", `w${worker}`);
  };
  for (let start = 0; start < operations; start += concurrency) {
    const calls: Promise<unknown>[] = [];
    for (let i = start; i < Math.min(start + concurrency, operations); i++) {
      const kind = i % 10;
      // Creates resolve later: until one has, the own-task operations create instead.
      if (kind === 0 || kind === 5 || own.length === 0) {
        calls.push(create(i, kind !== 5));
        continue;
      }
      if (kind === 2 || kind === 8) {
        calls.push(appendShared(i));
        continue;
      }
      if (kind === 7) {
        const value = `w${worker} patch ${i}`;
        patched = value;
        if (field === "title") calls.push(manager.update(sharedId, { title: value }));
        else if (field === "description") calls.push(manager.update(sharedId, { description: value }));
        else if (field === "assignedTo") calls.push(manager.assignAgent(sharedId, { assignedTo: value }));
        else calls.push(manager.setProgress(sharedId, { percent: i % 101, message: value }));
        continue;
      }
      if (kind === 9) {
        if (own.length > 2) {
          const victim = own.shift() as string;
          delete live[victim];
          deleted.push(victim);
          calls.push(manager.delete(victim));
        } else {
          calls.push(appendShared(i));
        }
        continue;
      }
      const target = own[i % own.length] as string;
      const expected = live[target] as WorkerReport["live"][string];
      if (kind === 1 || (kind === 6 && expected.status !== "pending")) {
        expected.lines.push(`w${worker}-${i}`);
        calls.push(manager.appendOutput(target, `w${worker}-${i}`));
      } else if (kind === 3) {
        expected.percent = i % 100;
        calls.push(manager.setProgress(target, { percent: i % 100, message: `step ${i}` }));
      } else if (kind === 4) {
        expected.title = `w${worker}-${i}-renamed`;
        calls.push(manager.update(target, { title: expected.title }));
      } else {
        expected.status = "running";
        calls.push(manager.start(target));
      }
    }
    await Promise.all(calls.map(counted));
  }
  await manager.flush();
  await manager.close();
  return {
    worker,
    acknowledged,
    live,
    deleted,
    sharedLines,
    patched: patched === null ? null : { field, value: patched },
    errors,
  };
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
