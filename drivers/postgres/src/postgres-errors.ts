import { driverErrors } from "@taskstore/core";

/** Core's errors, every message starting "postgres: ". */
export const errors = driverErrors("postgres");

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "EAI_AGAIN",
  "ENETUNREACH",
]);
const NETWORK_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|connection error|Connection is not open|Client was closed|not queryable/i;

/**
 * True when the server (or the way to it) is gone, as opposed to a statement that failed: SQLSTATE
 * class 08 (connection exception), 57P (shutdown, starting up, crash recovery), 53 (out of
 * resources, e.g. too many connections), socket errors, and node-postgres' own connection messages.
 */
export function isUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && (/^(08|57P|53)/.test(code) || NETWORK_CODES.has(code))) return true;
  return error instanceof Error && typeof code !== "string" && NETWORK_MESSAGES.test(error.message);
}

/** Core's error for what the server said, or the error itself when it is not the driver's to classify (a logical error from `work`). */
export function toDriverError(error: unknown, doing: string): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  const detail = error instanceof Error ? error.message : String(error);
  if (code === "55P03") return errors.lockTimeout(`${doing}: the store's lock was not granted in time (${detail})`, error);
  if (isUnavailable(error)) return errors.unavailable(`${doing}: ${detail}`, error);
  return error;
}

/**
 * The commit batch was sent and the connection failed before its reply came: the transaction may
 * have committed or not. Not a network error itself (the driver settles it through the txlog).
 */
export class AmbiguousCommit extends Error {
  constructor(readonly error: unknown) {
    super(errors.message("the reply to a commit was lost"), { cause: error });
  }
}

/** An error raised by a commit batch that was sent: the server may have committed it. */
export function isAmbiguous(error: unknown): boolean {
  // "not queryable": node-postgres refused to send (the connection was already broken).
  return isUnavailable(error) && !(error instanceof Error && /not queryable|Connection is not open/i.test(error.message));
}
