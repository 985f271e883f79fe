// A third party's test file, in a plain npm project outside the workspace (see ../packed.test.ts).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describeStorageDriver } from "@taskstore/conformance";
import * as drivers from "./drivers.mjs";

const which = process.env.DRIVER ?? "SoundFileDriver";

describeStorageDriver({
  name: which,
  ...(process.env.GROUPS ? { groups: process.env.GROUPS.split(",") } : {}),
  processes: { kills: 5, workers: 3, operations: 30, lockTakeoverMs: 2_000 },
  largeStoreSize: 2_000,
  setup: async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "taskstore-outside-"));
    return {
      open: async () => new drivers[which](dir),
      teardown: () => rm(dir, { recursive: true, force: true }),
      child: { module: new URL("./drivers.mjs", import.meta.url).href, export: which, args: [dir] },
    };
  },
});
