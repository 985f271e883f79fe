import { redactText, TaskStoreError } from "@taskstore/core";
import { isIoError } from "./usage-error.js";

/**
 * Exit codes, the one table. Scripts branch on these; the README lists them. Core error codes map
 * here; anything unrecognised is 1.
 */
export const EXIT_CODES = {
  OK: 0,
  UNEXPECTED: 1,
  USAGE: 2,
  VALIDATION: 2,
  NOT_FOUND: 3,
  INVALID_TRANSITION: 4,
  CYCLE: 4,
  LOCK_TIMEOUT: 5,
  CORRUPT_DATA: 6,
  STORAGE_UNAVAILABLE: 7,
  DRIVER_NOT_INSTALLED: 8,
  VERSION_UNSUPPORTED: 9,
  CONFLICT: 10,
  UNSUPPORTED: 11,
  TARGET_NOT_EMPTY: 12,
  AMBIGUOUS_ID: 13,
  NOT_CONFIRMED: 14,
  ENCRYPTION: 15,
} as const;

/** Codes of the CLI's own errors (usage-error.ts, id-prefix.ts, confirm.ts); every other code is core's. */
const CLI_CODES = new Set(["USAGE", "TARGET_NOT_EMPTY", "AMBIGUOUS_ID", "NOT_CONFIRMED"]);

export type ExitCodeName = keyof typeof EXIT_CODES;

/** What the CLI reports for an error: its stable code, the exit code, and one line for a person. */
export interface ErrorReport {
  code: string;
  exitCode: number;
  message: string;
}

export function reportError(error: unknown): ErrorReport {
  if (!TaskStoreError.isInstance(error) && isIoError(error)) {
    // An I/O error no layer named (a driver let a raw ENOENT through): the storage failed, not taskstore.
    return { code: "STORAGE_UNAVAILABLE", exitCode: EXIT_CODES.STORAGE_UNAVAILABLE, message: redactText((error as Error).message) };
  }
  const code = codeOf(error);
  const exitCode = code !== undefined && code in EXIT_CODES ? EXIT_CODES[code as ExitCodeName] : EXIT_CODES.UNEXPECTED;
  let message = error instanceof Error ? error.message : String(error);
  if (exitCode === EXIT_CODES.UNEXPECTED && !TaskStoreError.isInstance(error)) message = `unexpected error: ${message}`;
  return { code: code ?? "UNEXPECTED", exitCode, message: redactText(message) };
}

function codeOf(error: unknown): string | undefined {
  if (TaskStoreError.isInstance(error)) return error.code;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && CLI_CODES.has(code) ? code : undefined;
}
