import { z } from "zod";
import { type ApplyReport, ChangeApplier, type TaskChange } from "./changes.js";
import { checkChanges, markParsed } from "./check-changes.js";
import { isLogicalError, TaskNotFoundError, TaskStoreError } from "./errors.js";
import type { EventBus, TaskEventName, TaskEvents } from "./event-bus.js";
import { newTaskId } from "./ids.js";
import type { TaskRepository } from "./repository.js";
import {
  checkTaskId,
  LIMITS,
  type LogEntry,
  LogTypeSchema,
  MetadataSchema,
  parseOrThrow,
  type StoredTask,
  TaskIdSchema,
  type TaskProgress,
  TaskProgressSchema,
  type TaskStatus,
  TaskStatusSchema,
} from "./schema.js";
import { TaskTable } from "./table.js";

// Input objects refuse keys they do not know: `update(id, { status })` from plain JavaScript is an
// error naming the key, never a silent no-op. (Stored data keeps unknown fields: that is forward
// compatibility, not input.)
const CreateInputSchema = z.strictObject({
  title: z.string().min(1).max(LIMITS.titleLength),
  description: z.string().max(LIMITS.descriptionLength).optional(),
  parentId: TaskIdSchema.optional(),
  assignedTo: z.string().max(LIMITS.assignedToLength).optional(),
  metadata: MetadataSchema.optional(),
});
export type CreateTaskInput = z.input<typeof CreateInputSchema>;

const UpdateInputSchema = z.strictObject({
  title: z.string().min(1).max(LIMITS.titleLength).optional(),
  description: z.string().max(LIMITS.descriptionLength).optional(),
  assignedTo: z.string().max(LIMITS.assignedToLength).optional(),
  metadata: MetadataSchema.optional(),
});
export type UpdateTaskInput = z.input<typeof UpdateInputSchema>;

const AssignInputSchema = z.strictObject({ assignedTo: z.string().max(LIMITS.assignedToLength).nullable().optional() });

const ProgressInputSchema = TaskProgressSchema.strict();

const OutputSchema = z.object({
  output: z.string().max(LIMITS.logOutputLength),
  type: LogTypeSchema,
  source: z.string().max(LIMITS.logSourceLength).optional(),
});

const QuerySchema = z
  .strictObject({
    status: z.union([TaskStatusSchema, z.array(TaskStatusSchema)]).optional(),
    parentId: TaskIdSchema.nullable().optional(),
    assignedTo: z.string().optional(),
  })
  .optional();

/** Filters for `list()`. `parentId: null` lists the root tasks. */
export type TaskQuery = z.input<typeof QuerySchema>;

const NOT_FINISHED: readonly TaskStatus[] = ["pending", "running", "paused"];

/** The status machine: which statuses each action starts from, and where it goes. */
export const TRANSITIONS = {
  start: { from: ["pending"], to: "running" },
  pause: { from: ["running"], to: "paused" },
  resume: { from: ["paused"], to: "running" },
  complete: { from: ["running"], to: "completed" },
  fail: { from: NOT_FINISHED, to: "failed" },
  cancel: { from: NOT_FINISHED, to: "cancelled" },
  retry: { from: ["failed", "cancelled"], to: "pending" },
} as const satisfies Record<string, { from: readonly TaskStatus[]; to: TaskStatus }>;

/** Events the repository raises that the manager passes on to its bus. */
const FORWARDED: TaskEventName[] = [
  "persistence:error",
  "persistence:restored",
  "persistence:conflict",
  "storage:recovered",
  "storage:migrated",
  "storage:warning",
];

/**
 * Tasks in memory, persisted on every operation. Each operation becomes a change set: it is
 * checked and applied to memory at once (in call order), then written to the current stored state
 * through the repository, and its promise resolves once the change is durable. When storage
 * fails, the operation still succeeds in memory, the failure is emitted as `persistence:error`,
 * and the change is written as soon as storage works again.
 */
export class TaskManager {
  private table = new TaskTable();
  private turn: Promise<unknown> = Promise.resolve();
  private readonly unsubscribe: (() => void)[] = [];
  private refreshTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    readonly eventBus: EventBus,
    readonly repository: TaskRepository,
  ) {
    for (const name of FORWARDED) {
      this.unsubscribe.push(this.repository.events.on(name, (payload) => this.eventBus.emit(name, payload as never)));
    }
    // A queued change the store refused, or a store restored from backup: memory is stale.
    this.unsubscribe.push(this.repository.events.on("persistence:conflict", () => this.scheduleRefresh()));
    this.unsubscribe.push(this.repository.events.on("storage:recovered", () => this.scheduleRefresh()));
  }

  /** Loads every task from storage into memory, and follows other processes' changes where the driver can notify. */
  async loadFromRepository(): Promise<void> {
    // Following first, then loading: a change made while the load runs is either in what it
    // reads or announced afterwards (a refresh more), never missed.
    const stop = await this.repository.watch(() => this.scheduleRefresh());
    this.unsubscribe.push(stop);
    await this.refresh();
  }

  /** Reloads from storage, keeping changes that are accepted but not yet durable. */
  async refresh(): Promise<void> {
    await this.exclusive(async () => {
      const { tasks, queued } = await this.repository.snapshot();
      const table = new TaskTable();
      for (const task of tasks) table.tasks.set(task.id, task);
      for (const changes of queued) {
        const applier = new ChangeApplier(table.reader(), { logCap: this.repository.logCap });
        try {
          await applier.apply(changes);
          table.apply(applier.writeSet());
        } catch {
          // The stored state refuses it; the repository reports that when it writes it.
        }
      }
      this.table = table;
      this.eventBus.emit("tasks:refreshed", { count: table.tasks.size });
    });
  }

  // -------------------------------------------------------------------------------------------
  // Writes

  async create(input: CreateTaskInput): Promise<string> {
    const parsed = parseOrThrow(CreateInputSchema, input, "create");
    const now = Date.now();
    const task: StoredTask = markParsed({
      id: newTaskId(now),
      title: parsed.title,
      ...(parsed.description !== undefined ? { description: parsed.description } : {}),
      status: "pending",
      ...(parsed.parentId !== undefined ? { parentId: parsed.parentId } : {}),
      ...(parsed.assignedTo !== undefined ? { assignedTo: parsed.assignedTo } : {}),
      progress: { percent: 0 },
      metadata: parsed.metadata ?? {},
      createdAt: now,
      updatedAt: now,
      children: [],
      logs: [],
    });
    await this.run("create", [{ type: "create", task }]);
    this.emit("task:created", () => ({ task: this.snapshot(task.id) }));
    return task.id;
  }

  async update(id: string, updates: UpdateTaskInput): Promise<void> {
    this.checkId(id);
    const parsed = parseOrThrow(UpdateInputSchema, updates ?? {}, "update");
    const set = Object.fromEntries(Object.entries(parsed).filter(([, value]) => value !== undefined));
    await this.run("update", [{ type: "patch", id, set, at: Date.now() }]);
    this.emit("task:updated", () => ({ task: this.snapshot(id), fields: Object.keys(set) }));
  }

  /** Deletes a task and all its descendants. */
  async delete(id: string): Promise<void> {
    this.checkId(id);
    const report = await this.run("delete", [{ type: "remove", id, at: Date.now() }], { mustExist: id });
    this.emit("task:deleted", () => ({ id, ids: report.removed }));
  }

  start(id: string): Promise<void> {
    return this.transition(id, "start");
  }

  pause(id: string): Promise<void> {
    return this.transition(id, "pause");
  }

  resume(id: string): Promise<void> {
    return this.transition(id, "resume");
  }

  /** Completes a running task; its progress becomes 100%. */
  complete(id: string): Promise<void> {
    return this.transition(id, "complete");
  }

  /** Fails a task that has not finished; `error` is appended to its log as an "error" entry. */
  fail(id: string, error?: string): Promise<void> {
    return this.transition(id, "fail", error === undefined ? undefined : { output: String(error), type: "error" });
  }

  /** Cancels a task that has not finished; `reason` is appended to its log as an "info" entry. */
  cancel(id: string, reason?: string): Promise<void> {
    return this.transition(id, "cancel", reason === undefined ? undefined : { output: String(reason), type: "info" });
  }

  /** Puts a failed or cancelled task back to pending, at 0%. */
  retry(id: string): Promise<void> {
    return this.transition(id, "retry");
  }

  async setProgress(id: string, progress: TaskProgress): Promise<void> {
    this.checkId(id);
    const parsed = parseOrThrow(ProgressInputSchema, progress, "setProgress");
    await this.run("setProgress", [{ type: "patch", id, set: { progress: parsed }, at: Date.now() }]);
    this.emit("task:progress", () => ({ task: this.snapshot(id), progress: parsed }));
  }

  async appendOutput(id: string, output: string, type: LogEntry["type"] = "log", source?: string): Promise<void> {
    this.checkId(id);
    const parsed = parseOrThrow(OutputSchema, { output, type, ...(source !== undefined ? { source } : {}) }, "appendOutput");
    const entry: LogEntry = { timestamp: Date.now(), ...parsed };
    await this.run("appendOutput", [{ type: "append", id, entries: [entry], at: entry.timestamp }]);
    this.emit("task:output", () => ({ task: this.snapshot(id), entry }));
  }

  /** Assigns a task to an agent; `assignedTo: null` (or undefined) unassigns it. */
  async assignAgent(id: string, assignment: { assignedTo?: string | null }): Promise<void> {
    this.checkId(id);
    const { assignedTo } = parseOrThrow(AssignInputSchema, assignment ?? {}, "assignAgent");
    const change: TaskChange =
      assignedTo === null || assignedTo === undefined
        ? { type: "patch", id, set: {}, unset: ["assignedTo"], at: Date.now() }
        : { type: "patch", id, set: { assignedTo }, at: Date.now() };
    await this.run("assignAgent", [change]);
    this.emit("task:updated", () => ({ task: this.snapshot(id), fields: ["assignedTo"] }));
  }

  /** Makes `childId` a child of `parentId` (moving it from any other parent). Rejects missing tasks and cycles. */
  async linkParentChild(parentId: string, childId: string): Promise<void> {
    this.checkId(parentId, "parentId");
    this.checkId(childId, "childId");
    await this.run("linkParentChild", [{ type: "link", parentId, childId, at: Date.now() }]);
    this.emit("task:updated", () => ({ task: this.snapshot(childId), fields: ["parentId"] }));
    this.emit("task:updated", () => ({ task: this.snapshot(parentId), fields: ["children"] }));
  }

  // -------------------------------------------------------------------------------------------
  // Reads (from memory)

  /** A copy of the task, or undefined. */
  findById(id: string): StoredTask | undefined {
    const task = this.table.tasks.get(id);
    return task ? structuredClone(task) : undefined;
  }

  /** Copies of the tasks matching `query`, in creation order. */
  list(query?: TaskQuery): StoredTask[] {
    const q = parseOrThrow(QuerySchema, query, "list");
    const statuses = q?.status === undefined ? undefined : new Set(Array.isArray(q.status) ? q.status : [q.status]);
    const result: StoredTask[] = [];
    for (const task of this.table.tasks.values()) {
      if (statuses && !statuses.has(task.status)) continue;
      if (q?.parentId !== undefined && (task.parentId ?? null) !== q.parentId) continue;
      if (q?.assignedTo !== undefined && task.assignedTo !== q.assignedTo) continue;
      result.push(structuredClone(task));
    }
    return result.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle

  /** Waits until every change is durable; throws if storage still fails. */
  async flush(): Promise<void> {
    await this.turn;
    await this.repository.flush();
  }

  /** Flushes, stops following changes and closes the repository (and its driver). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.refreshTimer) clearTimeout(this.refreshTimer);
      for (const stop of this.unsubscribe.splice(0)) stop();
      await this.turn.catch(() => undefined);
      await this.repository.close();
    })();
    return this.closing;
  }

  // -------------------------------------------------------------------------------------------

  private async transition(id: string, action: keyof typeof TRANSITIONS, note?: Omit<LogEntry, "timestamp">): Promise<void> {
    this.checkId(id);
    const rule = TRANSITIONS[action];
    const at = Date.now();
    const set: Partial<StoredTask> = { status: rule.to };
    if (action === "retry") set.progress = { percent: 0 };
    const changes: TaskChange[] = [
      {
        type: "patch",
        id,
        set,
        transition: { action, from: rule.from },
        // Merged when applied, against the state of that moment, keeping its message and step.
        ...(action === "complete" ? { mergeProgress: { percent: 100 } } : {}),
        at,
      },
    ];
    if (note) {
      // The same rules as appendOutput: a note over the log entry's limit is refused, not stored.
      const entry = parseOrThrow(OutputSchema, note, action);
      changes.push({ type: "append", id, entries: [{ timestamp: at, ...entry }], at });
    }
    const report = await this.run(action, changes);
    const from = report.statusFrom.get(id) ?? (rule.from[0] as TaskStatus);
    this.emit("task:status", () => ({ task: this.snapshot(id), from, to: rule.to }));
  }

  /**
   * Applies a change set to memory (in call order, so an operation called before another without
   * awaiting it still comes first), then persists it. Resolves once it is durable or queued.
   */
  private async run(operation: string, proposed: TaskChange[], options: { mustExist?: string } = {}): Promise<ApplyReport> {
    if (this.closing) throw new TaskStoreError("CLOSED", "the task manager is closed");
    // Checked before memory changes: a change the store would refuse never reaches memory either.
    const changes = checkChanges(proposed, operation);
    const prepare = () =>
      this.exclusive(async () => {
        if (options.mustExist && !this.table.tasks.has(options.mustExist)) throw new TaskNotFoundError(options.mustExist);
        const applier = new ChangeApplier(this.table.reader(), { logCap: this.repository.logCap });
        const report = await applier.apply(changes);
        this.table.apply(applier.writeSet());
        // Queued while still holding the turn, so storage sees change sets in call order.
        const written = this.repository.apply(changes, { degrade: true, operation });
        return { report, written };
      });
    let prepared: Awaited<ReturnType<typeof prepare>>;
    try {
      prepared = await prepare();
    } catch (error) {
      // A task this manager has not seen may have been made by another process: look once.
      if (!TaskStoreError.hasCode(error, "NOT_FOUND")) throw error;
      await this.refresh();
      prepared = await prepare();
    }
    const { report, written } = prepared;
    try {
      await written;
    } catch (error) {
      // The stored state refused what memory accepted (another process got there first):
      // memory takes the stored state of what the change touched.
      if (isLogicalError(error)) await this.refresh().catch(() => undefined);
      throw error;
    }
    for (const [id, dropped] of report.dropped) {
      this.emit("logs:dropped", () => ({ id, dropped, total: this.table.tasks.get(id)?.droppedLogCount ?? dropped }));
    }
    return report;
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const next = this.turn.then(work, work);
    this.turn = next.catch(() => undefined);
    return next;
  }

  private scheduleRefresh(): void {
    if (this.refreshTimer || this.closing) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      this.refresh().catch(() => undefined);
    }, 25);
    this.refreshTimer.unref();
  }

  private checkId(id: string, field = "id"): void {
    checkTaskId(id, field);
  }

  private snapshot(id: string): StoredTask {
    const task = this.table.tasks.get(id);
    return task ? structuredClone(task) : ({ id } as StoredTask);
  }

  /** Emits only when someone listens: a payload copies the task, log and all. */
  private emit<K extends TaskEventName>(event: K, payload: () => TaskEvents[K]): void {
    if (this.eventBus.listenerCount(event) > 0) this.eventBus.emit(event, payload());
  }
}
