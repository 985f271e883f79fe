import { type DriverCapabilities, TaskStoreError } from "@taskstore/core";
import type { TestContext } from "vitest";
import type { Harness } from "./harness.js";

/** Skips the test (with the reason shown) unless the driver declares every flag. */
export async function need(h: Harness, ctx: TestContext, ...flags: (keyof DriverCapabilities)[]): Promise<void> {
  const caps = await h.capabilities();
  const missing = flags.filter((flag) => !caps[flag]);
  if (missing.length > 0) ctx.skip(`the driver does not declare: ${missing.join(", ")}`);
}

/** Skips a process test for a driver whose stores live inside one process (`processes: false`). */
export function needProcesses(h: Harness, ctx: TestContext): void {
  if (h.options.processes === false) ctx.skip("processes: false: this driver's stores live inside one process");
}

/**
 * Waits until `condition()` holds, looking every 20 ms, and fails naming `what` after `timeoutMs`.
 * A bound on liveness (a notification must arrive), not a measurement: the bound is generous.
 */
export async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`conformance: gave up after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Runs a write that may first meet the lock of a holder that was killed: LOCK_TIMEOUT is retried
 * until the driver's documented takeover time (`lockTakeoverMs`) has passed; then it fails.
 */
export async function afterTakeover<T>(h: Harness, write: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + h.processOptions.lockTakeoverMs;
  for (;;) {
    try {
      return await write();
    } catch (error) {
      if (!TaskStoreError.hasCode(error, "LOCK_TIMEOUT") || Date.now() > deadline) throw error;
    }
  }
}
