// Run by ../broken.test.ts, one broken driver at a time (never by the main test run: the suite
// must FAIL here). BROKEN_DRIVER names the export of drivers.mjs; BROKEN_GROUPS the groups.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describeStorageDriver, type GroupName } from "@taskstore/conformance";
import type { StorageDriver } from "@taskstore/core";

const which = process.env.BROKEN_DRIVER ?? "SoundFileDriver";
const module = new URL("./drivers.mjs", import.meta.url).href;
const Driver = ((await import(module)) as Record<string, new (dir: string) => StorageDriver>)[which] as new (dir: string) => StorageDriver;

describeStorageDriver({
  name: which,
  groups: (process.env.BROKEN_GROUPS ?? "").split(",") as GroupName[],
  processes: { workers: 3, operations: 40, kills: 10, lockTakeoverMs: 2_000 },
  setup: async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "taskstore-broken-"));
    return {
      open: async () => new Driver(dir),
      teardown: () => rm(dir, { recursive: true, force: true }),
      child: { module, export: which, args: [dir] },
    };
  },
});
