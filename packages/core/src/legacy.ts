import { newTaskId } from "./ids.js";
import { isPlainObject, isWritableVersion, LIMITS, parseStorageData, SCHEMA_VERSION, type StorageData, type StoredTask } from "./schema.js";

/** One item of the legacy format: a bare JSON array of simple todos. */
export interface LegacyTodo {
  text: string;
  completed: boolean;
}

/** True when `data` is the legacy format: an array whose items all have `text` and `completed`. */
export function isLegacyData(data: unknown): data is LegacyTodo[] {
  return (
    Array.isArray(data) && data.every((item) => isPlainObject(item) && typeof item.text === "string" && typeof item.completed === "boolean")
  );
}

export interface MigrateLegacyOptions {
  /** Creation time given to every migrated task (default: now). */
  now?: number;
}

/**
 * Converts a legacy todo array to the current format: each todo becomes a task whose title is
 * its text (cut to the title limit, the whole text kept in the description when cut), completed
 * at 100% or pending at 0%. The original text is kept in `metadata.legacy`.
 * Pure apart from the ids and the clock; it writes nothing.
 */
export function migrateLegacy(data: readonly LegacyTodo[], options: MigrateLegacyOptions = {}): StorageData {
  const now = options.now ?? Date.now();
  const tasks = data.map((todo, index): StoredTask => {
    const text = todo.text.trim() || `Untitled todo ${index + 1}`;
    const title = text.length > LIMITS.titleLength ? `${text.slice(0, LIMITS.titleLength - 1)}…` : text;
    return {
      id: newTaskId(now),
      title,
      ...(title !== text ? { description: text.slice(0, LIMITS.descriptionLength) } : {}),
      status: todo.completed ? "completed" : "pending",
      progress: { percent: todo.completed ? 100 : 0 },
      metadata: { legacy: { index, completed: todo.completed } },
      createdAt: now,
      updatedAt: now,
      children: [],
      logs: [],
    };
  });
  return { version: SCHEMA_VERSION, tasks, metadata: { lastUpdated: now, totalTasks: tasks.length } };
}

/**
 * Whether data is a store core can load: a legacy todo array (migrated), a store that passes the
 * schema, or one a newer major version wrote whose tasks this version can still read. Drivers use it to decide whether a
 * copy is worth keeping as a backup or restoring.
 */
export function isLoadableStore(data: unknown): boolean {
  if (isLegacyData(data)) return true;
  const store = data as { version?: unknown; tasks?: unknown } | null;
  if (typeof store?.version !== "string" || !Array.isArray(store.tasks)) return false;
  try {
    // A newer major version loads when its tasks still have the shape this version reads.
    parseStorageData(isWritableVersion(store.version) ? data : { ...(data as object), version: SCHEMA_VERSION });
    return true;
  } catch {
    return false;
  }
}
