import { afterEach, beforeEach, describe } from "vitest";
import { backupTests } from "./groups/backup.js";
import { compatibilityTests, scaleTests } from "./groups/compat.js";
import { concurrencyTests, lockingTests } from "./groups/concurrency.js";
import { lifecycleTests } from "./groups/lifecycle.js";
import { managerTests } from "./groups/manager.js";
import { roundTripTests } from "./groups/round-trip.js";
import { saveRemoveTests } from "./groups/save-remove.js";
import { validationTests } from "./groups/validation.js";
import { type ConformanceOptions, type ConformanceStore, Harness } from "./harness.js";

export { LegacyOnceDriver, makeLogs, makeTask } from "./fixtures.js";
export type { ConformanceOptions, ConformanceStore };

/**
 * Declares the whole taskstore driver suite (vitest) for one driver. Each test gets a fresh
 * store from `setup()`; tests of what the driver's capabilities manifest does not declare are
 * reported as skipped, with the reason.
 */
export function describeStorageDriver(options: ConformanceOptions): void {
  const h = new Harness(options);
  describe(`StorageDriver conformance: ${options.name}`, { timeout: options.timeoutMs ?? 60_000 }, () => {
    beforeEach(() => h.begin());
    afterEach(() => h.end());
    describe("lifecycle", () => lifecycleTests(h));
    describe("round-trip fidelity", () => roundTripTests(h));
    describe("saveMany and remove", () => saveRemoveTests(h));
    describe("TaskManager persistence", () => managerTests(h));
    describe("locking", () => lockingTests(h));
    describe("concurrent change sets", () => concurrencyTests(h));
    describe("backup and restore", () => backupTests(h));
    describe("validation and hostile input", () => validationTests(h));
    describe("versions and legacy data", () => compatibilityTests(h));
    describe("scale", () => scaleTests(h, options.largeStoreSize ?? 10_000));
  });
}
