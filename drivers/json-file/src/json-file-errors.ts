import { driverErrors, ValidationError } from "@taskstore/core";
import { codeOf } from "./json-file-atomic.js";

/** Core's errors, every message starting "json-file: ". */
export const errors = driverErrors("json-file");

/** I/O failures that mean "storage is not usable now": reported as STORAGE_UNAVAILABLE and retried by core. */
const UNAVAILABLE = new Set(["EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "EIO", "ENOTDIR", "EISDIR", "EMFILE", "ENFILE", "EBUSY"]);

/** Runs an I/O step, turning "storage is not usable" errors into `StorageUnavailableError` with the path in the message. */
export async function io<T>(what: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    const code = codeOf(error);
    if (code && UNAVAILABLE.has(code)) {
      throw errors.unavailable(`cannot ${what}: ${(error as Error).message}`, error);
    }
    throw error;
  }
}

/** `error` as `io()` reports it (STORAGE_UNAVAILABLE for the codes that mean storage is not usable now). */
export async function unavailable(error: unknown, what: string): Promise<unknown> {
  return io(what, () => Promise.reject(error)).catch((mapped: unknown) => mapped);
}

/** A write that would make the store at `file` larger than `limit` bytes (`maxStoreBytes`). */
export function tooLarge(size: number, limit: number, file: string): ValidationError {
  const what = Number.isFinite(size) ? `${size} bytes` : "larger than the longest string JavaScript can hold";
  return new ValidationError(
    [
      {
        path: [],
        rule: "max_store_size",
        message: `the store would be ${what}, over its limit of ${limit} bytes (maxStoreBytes); nothing was written`,
      },
    ],
    { subject: `json-file: ${file}` },
  );
}

/** Something other than a regular file at `file` (a FIFO, a device, a folder): never opened. */
export function notRegular(file: string, type: string): ValidationError {
  return errors.validation([
    {
      path: ["path"],
      rule: "regular_file",
      message: `${file} is ${type} (after following symlinks), not a regular file; the driver does not open, change or write beside it`,
    },
  ]);
}
