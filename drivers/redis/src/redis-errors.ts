import { driverErrors, TaskStoreError } from "@taskstore/core";
import { ReplyError } from "ioredis";

/** Core's errors, every message starting "redis: ". */
export const errors = driverErrors("redis");

/**
 * Whether a failed command may have reached the server and run (its reply was lost: connection
 * closed, timeout), as opposed to an error reply or a command the client refused to send.
 */
export function unanswered(error: unknown): boolean {
  const cause = (error as { cause?: unknown })?.cause ?? error;
  if (TaskStoreError.isInstance(cause) || cause instanceof ReplyError) return false;
  return !/enableOfflineQueue options is false/.test(String((cause as Error)?.message ?? cause));
}

/** A reply of MULTI/EXEC: its value, or its error thrown (pipelines report errors per command instead of rejecting). */
export function replyOf<T>(reply: [Error | null, unknown] | undefined): T {
  if (!reply) throw errors.unavailable("a transaction returned fewer replies than commands");
  if (reply[0]) throw reply[0];
  return reply[1] as T;
}

/** Throws the first error among a MULTI's replies, or when the MULTI was aborted. */
export function checkReplies(replies: [Error | null, unknown][] | null): void {
  if (!replies) throw errors.unavailable("a transaction was aborted");
  for (const reply of replies) replyOf(reply);
}

/** A stored JSON object (a task, a log entry, the store's extra fields); anything else is `CORRUPT_DATA`. */
export function parseObject(text: string, what: string): Record<string, unknown> {
  const value = errors.parseJson(text, what);
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw errors.corrupt(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}
