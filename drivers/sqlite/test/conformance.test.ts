import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describeStorageDriver, folderBytes } from "@taskstore/conformance";
import { beforeAll } from "vitest";
import { SQLiteStorageDriver } from "../src/index.js";
import { buildPackage } from "./helpers.js";

// Child processes open the store through the built package.
beforeAll(buildPackage);

describeStorageDriver({
  name: "sqlite",
  async setup() {
    const dir = await mkdtemp(path.join(os.tmpdir(), "taskstore-sqlite-conformance-"));
    const file = path.join(dir, "tasks.db");
    return {
      open: async () => new SQLiteStorageDriver({ path: file }),
      teardown: () => rm(dir, { recursive: true, force: true }),
      readRaw: () => folderBytes(dir),
      child: { module: import.meta.resolve("@taskstore/driver-sqlite"), export: "SQLiteStorageDriver", args: [{ path: file }] },
    };
  },
});
