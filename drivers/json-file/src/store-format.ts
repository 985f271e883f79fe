import { CorruptDataError, SCHEMA_VERSION, type StorageData, StorageUnavailableError } from "@taskstore/core";
import { codeOf } from "./atomic-file.js";

/** I/O failures that mean "storage is not usable now": reported as STORAGE_UNAVAILABLE and retried by core. */
const UNAVAILABLE = new Set(["EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "EIO", "ENOTDIR", "EISDIR", "EMFILE", "ENFILE", "EBUSY"]);

export function emptyData(): StorageData {
  return { version: SCHEMA_VERSION, tasks: [], metadata: { lastUpdated: 0, totalTasks: 0 } };
}

/** Parses the store's bytes; the schema is core's business, but what is not a JSON object or array is corrupt. */
export function parseStore(bytes: Buffer, file: string): StorageData {
  // A byte order mark, as some editors add, is not an error.
  const text = bytes.toString("utf8").replace(/^\uFEFF/, "");
  if (text.trim() === "") throw new CorruptDataError(`json-file: ${file} is empty`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new CorruptDataError(`json-file: ${file} is not valid JSON (truncated or damaged): ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (typeof parsed !== "object" || parsed === null)
    throw new CorruptDataError(`json-file: ${file} holds no store (a JSON ${parsed === null ? "null" : typeof parsed})`);
  return parsed as StorageData;
}

/** Runs an I/O step, turning "storage is not usable" errors into `StorageUnavailableError` with the path in the message. */
export async function io<T>(what: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    const code = codeOf(error);
    if (code && UNAVAILABLE.has(code)) {
      throw new StorageUnavailableError(`json-file: cannot ${what}: ${(error as Error).message}`, { cause: error });
    }
    throw error;
  }
}
