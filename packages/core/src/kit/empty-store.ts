import { SCHEMA_VERSION, type StorageData } from "../schema.js";

/**
 * What `loadData()` returns for a store that was never written: no tasks, this taskstore's schema
 * version, `lastUpdated` 0. A fresh object on every call, since the data is the caller's.
 */
export function emptyStore(): StorageData {
  return { version: SCHEMA_VERSION, tasks: [], metadata: { lastUpdated: 0, totalTasks: 0 } };
}
