import { driverErrors, type TaskStoreError } from "@taskstore/core";

/** Core's errors, every message starting "s3: ". */
export const errors = driverErrors("s3");

/** The HTTP status of an SDK error, if the server answered. */
export function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/**
 * What a request that still failed after the SDK's retries (5xx, throttling, timeouts, dropped
 * connections) becomes: `STORAGE_UNAVAILABLE` naming the request, its error name and HTTP status,
 * the SDK's error kept as `cause`. The answers the driver branches on (404, 409, 412) never get
 * here: `S3Io` turns them into values first.
 */
export function toDriverError(error: unknown, doing: string): TaskStoreError {
  const status = statusOf(error);
  const detail = `${(error as Error).name ?? "Error"}${status ? ` (HTTP ${status})` : ""}: ${(error as Error).message}`;
  return errors.wrap(error, doing, detail);
}
