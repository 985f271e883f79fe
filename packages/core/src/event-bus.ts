import type { RestoreResult } from "./driver.js";
import type { TaskStoreError } from "./errors.js";
import type { LogEntry, StoredTask, TaskProgress, TaskStatus } from "./schema.js";

/** Every event taskstore emits, by name, with its payload. */
export interface TaskEvents {
  "task:created": { task: StoredTask };
  /** Fields other than status, progress and the log changed. */
  "task:updated": { task: StoredTask; fields: string[] };
  "task:status": { task: StoredTask; from: TaskStatus; to: TaskStatus };
  "task:progress": { task: StoredTask; progress: TaskProgress };
  "task:output": { task: StoredTask; entry: LogEntry };
  /** `ids` holds the task and every descendant removed with it. */
  "task:deleted": { id: string; ids: string[] };
  /** A write could not reach storage. With `pending > 0` it is kept and retried (graceful degradation). */
  "persistence:error": { error: TaskStoreError; operation: string; pending: number };
  /** Storage works again and every pending change is durable. */
  "persistence:restored": { written: number };
  /** A queued change was refused by the stored state when it was finally written, and dropped. */
  "persistence:conflict": { error: TaskStoreError; operation: string };
  /** An unreadable store was moved aside and its backup restored. */
  "storage:recovered": { reason: TaskStoreError; result: RestoreResult };
  /** The driver met a problem no caller was waiting for (a compromised lock, a lost connection). */
  "storage:warning": { error: TaskStoreError };
  /** A legacy todo file was converted to the current format. */
  "storage:migrated": { tasks: number };
  /** The log cap dropped old entries of a task. */
  "logs:dropped": { id: string; dropped: number; total: number };
  /** Tasks were reloaded from storage (manual refresh or a change notification). */
  "tasks:refreshed": { count: number };
}

export type TaskEventName = keyof TaskEvents;
export type TaskEventListener<K extends TaskEventName> = (payload: TaskEvents[K]) => void;

/**
 * A small typed event emitter. A listener that throws never breaks the operation that emitted:
 * its error is reported as a process warning.
 */
export class EventBus<Events extends { [K in keyof Events]: unknown } = TaskEvents> {
  private readonly listeners = new Map<keyof Events, Set<(payload: never) => void>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: (payload: Events[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as (payload: never) => void);
    return () => this.off(event, listener);
  }

  /** Adds a listener that runs once. */
  once<K extends keyof Events>(event: K, listener: (payload: Events[K]) => void): () => void {
    const off = this.on(event, (payload) => {
      off();
      listener(payload);
    });
    return off;
  }

  off<K extends keyof Events>(event: K, listener: (payload: Events[K]) => void): void {
    this.listeners.get(event)?.delete(listener as (payload: never) => void);
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as (payload: Events[K]) => void)(payload);
      } catch (error) {
        process.emitWarning(`taskstore: a listener of "${String(event)}" threw: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }

  /** How many listeners an event has. */
  listenerCount(event: keyof Events): number {
    return this.listeners.get(event)?.size ?? 0;
  }
}
