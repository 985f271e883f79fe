import { patched, withoutKey } from "./copy.js";
import type { StoreReader, WriteSet } from "./driver.js";
import { ConflictError, CycleError, InvalidTransitionError, TaskNotFoundError, VersionUnsupportedError } from "./errors.js";
import {
  isWritableVersion,
  type LogEntry,
  SCHEMA_VERSION,
  type StoredTask,
  type TaskBody,
  type TaskHead,
  type TaskProgress,
  type TaskStatus,
} from "./schema.js";

/** The fields a patch may set. */
export type PatchableFields = Pick<StoredTask, "title" | "description" | "status" | "assignedTo" | "progress" | "metadata">;

/**
 * One change to the store. A change set is a list of them, applied all or nothing to the
 * *current* stored state: this is what keeps two processes from overwriting each other.
 */
export type TaskChange =
  /** A new task; its parent (if any) gains it as a child. Fails if the id exists or the parent does not. */
  | { type: "create"; task: StoredTask }
  /** Stores the task exactly as given, replacing any task with its id (the seed's `save`). */
  | { type: "put"; task: StoredTask }
  /** Sets (and unsets) fields of one task; with `transition`, only if its current status allows it. */
  | {
      type: "patch";
      id: string;
      set: Partial<PatchableFields>;
      unset?: ("description" | "assignedTo")[];
      transition?: { action: string; from: readonly TaskStatus[] };
      /** Fields merged into the task's current progress (so a merge never undoes another writer's message). */
      mergeProgress?: Partial<TaskProgress>;
      at: number;
    }
  /** Appends entries to a task's log. */
  | { type: "append"; id: string; entries: LogEntry[]; at: number }
  /** Makes `childId` a child of `parentId`, moving it from its old parent; rejects cycles. */
  | { type: "link"; parentId: string; childId: string; at: number }
  /** Removes a task, its descendants and its place in its parent's children. Missing: no change. */
  | { type: "remove"; id: string; at: number };

export interface ApplyOptions {
  /** Per-task log cap: older entries beyond it are dropped and counted in `droppedLogCount`. */
  logCap: number;
}

interface PendingLog {
  replace: boolean;
  entries: LogEntry[];
}

/** What one change set did, for events and metrics. */
export interface ApplyReport {
  /** Log entries dropped by the cap, per task id. */
  dropped: Map<string, number>;
  /** Ids removed (with descendants). */
  removed: string[];
  /** For each task whose status a transition changed: the status it had before. */
  statusFrom: Map<string, TaskStatus>;
}

/**
 * Applies change sets to a store through a reader, collecting one `WriteSet`. Each change set
 * runs in its own layer: if it throws (a missing task, an illegal transition), only that change
 * set is discarded and the ones before it stay.
 */
export class ChangeApplier {
  private readonly heads = new Map<string, TaskHead | null>();
  private readonly logs = new Map<string, PendingLog>();
  private version: string | undefined;

  constructor(
    private readonly reader: StoreReader,
    private readonly options: ApplyOptions,
  ) {}

  /** Applies one change set, or throws and leaves everything as it was before the call. */
  async apply(changes: readonly TaskChange[]): Promise<ApplyReport> {
    if (this.version === undefined) {
      const version = await this.reader.version();
      if (!isWritableVersion(version)) throw new VersionUnsupportedError(version, SCHEMA_VERSION);
      this.version = version;
    }
    const layer = new Layer(this);
    for (const change of changes) await layer.apply(change);
    for (const [id, head] of layer.heads) setMoving(this.heads, id, head);
    for (const [id, log] of layer.logs) this.logs.set(id, log);
    return layer.report;
  }

  /** Everything applied so far, ready for a driver. */
  writeSet(): WriteSet {
    const puts: TaskBody[] = [];
    const deletes: string[] = [];
    for (const [id, head] of this.heads) {
      if (head === null) deletes.push(id);
      else puts.push(withoutKey(head, "logCount"));
    }
    const logs = [...this.logs]
      .filter(([id]) => this.heads.get(id) !== null)
      .map(([id, log]) => ({ id, entries: log.entries, replace: log.replace, keep: this.options.logCap }));
    return { puts, logs, deletes };
  }

  /** @internal */
  async lookup(id: string): Promise<TaskHead | null | undefined> {
    if (this.heads.has(id)) return this.heads.get(id);
    return this.reader.get(id);
  }

  /** @internal */
  pendingLog(id: string): PendingLog | undefined {
    return this.logs.get(id);
  }

  /** @internal */
  get logCap(): number {
    return this.options.logCap;
  }
}

class Layer {
  readonly heads = new Map<string, TaskHead | null>();
  readonly logs = new Map<string, PendingLog>();
  readonly report: ApplyReport = { dropped: new Map(), removed: [], statusFrom: new Map() };

  constructor(private readonly base: ChangeApplier) {}

  async apply(change: TaskChange): Promise<void> {
    switch (change.type) {
      case "create": {
        const { task } = change;
        if (await this.find(task.id)) throw new ConflictError(`a task with id ${task.id} already exists`);
        if (task.parentId !== undefined) {
          const parent = await this.require(task.parentId);
          await this.refuseCycle(task.parentId, task.id);
          if (!parent.children.includes(task.id)) {
            this.write(patched(parent, { children: [...parent.children, task.id], updatedAt: later(parent.updatedAt, task.createdAt) }));
          }
        }
        this.putWhole(task);
        return;
      }
      case "put":
        if (change.task.parentId !== undefined) await this.refuseCycle(change.task.parentId, change.task.id);
        this.putWhole(change.task);
        return;
      case "patch": {
        const head = await this.require(change.id);
        let next = patched<TaskHead>(head, change.set);
        next.updatedAt = later(head.updatedAt, change.at);
        if (change.transition) {
          const to = change.set.status ?? head.status;
          if (!change.transition.from.includes(head.status)) {
            throw new InvalidTransitionError(change.id, head.status, to, change.transition.action);
          }
        }
        if (change.mergeProgress) next.progress = { ...head.progress, ...change.mergeProgress };
        if (change.transition) this.report.statusFrom.set(change.id, head.status);
        for (const key of change.unset ?? []) next = withoutKey(next, key) as TaskHead;
        this.write(next);
        return;
      }
      case "append": {
        const head = await this.require(change.id);
        const log = this.logFor(change.id);
        log.entries.push(...change.entries);
        this.write(this.capped(patched(head, { updatedAt: later(head.updatedAt, change.at) }), change.entries.length, log));
        return;
      }
      case "link": {
        const { parentId, childId } = change;
        const parent = await this.require(parentId);
        const child = await this.require(childId);
        await this.refuseCycle(parentId, childId, parent);
        if (child.parentId === parentId && parent.children.includes(childId)) return;
        if (child.parentId !== undefined && child.parentId !== parentId) {
          const old = await this.find(child.parentId);
          if (old)
            this.write(patched(old, { children: old.children.filter((id) => id !== childId), updatedAt: later(old.updatedAt, change.at) }));
        }
        const fresh = (await this.find(parentId)) as TaskHead;
        this.write(
          patched(fresh, {
            children: [...fresh.children.filter((id) => id !== childId), childId],
            updatedAt: later(fresh.updatedAt, change.at),
          }),
        );
        this.write(patched(child, { parentId, updatedAt: later(child.updatedAt, change.at) }));
        return;
      }
      case "remove": {
        const head = await this.find(change.id);
        if (!head) return;
        const doomed: string[] = [];
        const queue = [head];
        const seen = new Set<string>();
        while (queue.length > 0) {
          const task = queue.shift() as TaskHead;
          if (seen.has(task.id)) continue;
          seen.add(task.id);
          doomed.push(task.id);
          for (const childId of task.children) {
            const child = await this.find(childId);
            if (child && child.parentId === task.id) queue.push(child);
          }
        }
        if (head.parentId !== undefined) {
          const parent = await this.find(head.parentId);
          if (parent && !seen.has(parent.id)) {
            this.write(
              patched(parent, {
                children: parent.children.filter((id) => id !== head.id),
                updatedAt: later(parent.updatedAt, change.at),
              }),
            );
          }
        }
        for (const id of doomed) {
          this.heads.set(id, null);
          this.logs.delete(id);
        }
        this.report.removed.push(...doomed);
        return;
      }
    }
  }

  /**
   * Throws CycleError when making `childId` a child of `parentId` would make a cycle: when the
   * child is the parent or one of its ancestors. Every path that sets a parent asks (create, put,
   * link), so no write makes a cycle; one already stored (an older version, a hand edit) ends
   * the walk instead of looping.
   */
  private async refuseCycle(parentId: string, childId: string, parent?: TaskHead): Promise<void> {
    if (parentId === childId) throw new CycleError(parentId, childId);
    const seen = new Set<string>();
    let up = parent ? parent.parentId : (await this.find(parentId))?.parentId;
    while (up !== undefined && !seen.has(up)) {
      if (up === childId) throw new CycleError(parentId, childId);
      seen.add(up);
      up = (await this.find(up))?.parentId;
    }
  }

  private async find(id: string): Promise<TaskHead | undefined> {
    const head = this.heads.has(id) ? this.heads.get(id) : await this.base.lookup(id);
    return head ?? undefined;
  }

  private async require(id: string): Promise<TaskHead> {
    const head = await this.find(id);
    if (!head) throw new TaskNotFoundError(id);
    return head;
  }

  private write(head: TaskHead): void {
    setMoving(this.heads, head.id, head);
  }

  /** Stores a whole task: its head, and its log replacing any log it had. */
  private putWhole(task: StoredTask): void {
    const body = withoutKey(task, "logs");
    const log: PendingLog = { replace: true, entries: [...task.logs] };
    this.logs.set(task.id, log);
    this.write(this.capped(patched(body as TaskHead, { logCount: 0 }), task.logs.length, log));
  }

  /** The pending log of a task in this layer, copied up from the applier on first touch. */
  private logFor(id: string): PendingLog {
    let log = this.logs.get(id);
    if (!log) {
      const below = this.base.pendingLog(id);
      log = below ? { replace: below.replace, entries: [...below.entries] } : { replace: false, entries: [] };
      this.logs.set(id, log);
    }
    return log;
  }

  /** Counts `added` entries into the head and applies the cap, recording what it drops. */
  private capped(head: TaskHead, added: number, log: PendingLog): TaskHead {
    const cap = this.base.logCap;
    const total = head.logCount + added;
    if (total <= cap) return patched(head, { logCount: total });
    const dropped = total - cap;
    // Entries still pending beyond the cap never need to reach the driver.
    if (log.entries.length > cap) log.entries.splice(0, log.entries.length - cap);
    this.report.dropped.set(head.id, (this.report.dropped.get(head.id) ?? 0) + dropped);
    return patched(head, { logCount: cap, droppedLogCount: (head.droppedLogCount ?? 0) + dropped });
  }
}

/**
 * Sets a head; a task created again after being removed moves to the end, as it would in a
 * store written one change set at a time (so group commit never changes the order of tasks).
 */
function setMoving(heads: Map<string, TaskHead | null>, id: string, head: TaskHead | null): void {
  if (head !== null && heads.get(id) === null) heads.delete(id);
  heads.set(id, head);
}

function later(previous: number, at: number): number {
  return Math.max(at, previous);
}
