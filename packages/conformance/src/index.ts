import { afterEach, beforeEach, describe } from "vitest";
import { atomicityTests } from "./groups/atomicity.js";
import { backupTests } from "./groups/backup.js";
import { compatibilityTests, scaleTests } from "./groups/compat.js";
import { concurrencyTests, lockingTests } from "./groups/concurrency.js";
import { crashTests } from "./groups/crashes.js";
import { storedErrorTests } from "./groups/errors.js";
import { incrementalBackupTests } from "./groups/incremental-backup.js";
import { lifecycleTests } from "./groups/lifecycle.js";
import { managerTests } from "./groups/manager.js";
import { processTests } from "./groups/processes.js";
import { reopeningTests } from "./groups/reopening.js";
import { roundTripTests } from "./groups/round-trip.js";
import { saveRemoveTests } from "./groups/save-remove.js";
import { sealingTests } from "./groups/sealing.js";
import { validationTests } from "./groups/validation.js";
import { watchingTests } from "./groups/watching.js";
import { type ConformanceOptions, type ConformanceStore, GROUP_NAMES, type GroupName, Harness, type ProcessOptions } from "./harness.js";

export { type Child, type ChildDriver, type ChildJob, openChildDriver, runChild, startChild } from "./child-driver.js";
export { byId, LegacyOnceDriver, makeLogs, makeTask } from "./fixtures.js";
export { folderBytes } from "./raw.js";
export { tornReason } from "./torn.js";
export { until } from "./waiting.js";
export { checkWorkload, runWorkload, type WorkerReport, type WorkloadOptions, type WorkloadResult, type WorkloadTask } from "./workload.js";
export {
  atomicityTests,
  backupTests,
  type ConformanceOptions,
  type ConformanceStore,
  compatibilityTests,
  concurrencyTests,
  crashTests,
  GROUP_NAMES,
  type GroupName,
  Harness,
  incrementalBackupTests,
  lifecycleTests,
  lockingTests,
  managerTests,
  type ProcessOptions,
  processTests,
  reopeningTests,
  roundTripTests,
  saveRemoveTests,
  scaleTests,
  sealingTests,
  storedErrorTests,
  validationTests,
  watchingTests,
};

/** Each group: its title in the report and what declares its tests. */
const GROUPS: Record<GroupName, [title: string, tests: (h: Harness, options: ConformanceOptions) => void]> = {
  lifecycle: ["lifecycle", lifecycleTests],
  "round-trip": ["round-trip fidelity", roundTripTests],
  "save-remove": ["saveMany and remove", saveRemoveTests],
  manager: ["TaskManager persistence", managerTests],
  locking: ["locking", lockingTests],
  concurrency: ["concurrent change sets", concurrencyTests],
  backup: ["backup and restore", backupTests],
  validation: ["validation and hostile input", validationTests],
  compat: ["versions and legacy data", compatibilityTests],
  scale: ["scale", (h, options) => scaleTests(h, options.largeStoreSize ?? 10_000)],
  processes: ["several processes on one store", processTests],
  crashes: ["a writer killed with SIGKILL", crashTests],
  atomicity: ["readers during a write", atomicityTests],
  watching: ["change notification across instances and processes", watchingTests],
  reopening: ["data that outlives the instance", reopeningTests],
  sealing: ["encryption at rest and compression", sealingTests],
  "incremental-backup": ["incremental backup and point restore", incrementalBackupTests],
  errors: ["errors recorded with the store", storedErrorTests],
};

const PROCESS_GROUPS: ReadonlySet<GroupName> = new Set(["processes", "crashes", "atomicity", "watching", "incremental-backup"]);

/**
 * Declares the taskstore driver suite (vitest) for one driver. Each test gets a fresh store from
 * `setup()`; tests of what the driver's capabilities manifest does not declare are reported as
 * skipped, with the reason. `options.groups` runs some groups alone.
 */
export function describeStorageDriver(options: ConformanceOptions): void {
  for (const name of options.groups ?? []) {
    if (!(GROUP_NAMES as readonly string[]).includes(name)) {
      throw new Error(`conformance: unknown group ${name}; the groups are ${GROUP_NAMES.join(", ")}`);
    }
  }
  const h = new Harness(options);
  const selected = options.groups ?? GROUP_NAMES;
  describe(`StorageDriver conformance: ${options.name}`, () => {
    beforeEach(() => h.begin());
    afterEach(() => h.end());
    for (const name of GROUP_NAMES) {
      if (!selected.includes(name)) continue;
      const [title, tests] = GROUPS[name];
      const timeout = options.timeoutMs ?? (PROCESS_GROUPS.has(name) ? 120_000 : 60_000);
      describe(title, { timeout }, () => tests(h, options));
    }
  });
}
