import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describeStorageDriver } from "@taskstore/conformance";
import { SQLiteStorageDriver } from "../src/index.js";

describeStorageDriver({
  name: "sqlite",
  async setup() {
    const dir = await mkdtemp(path.join(os.tmpdir(), "taskstore-sqlite-conformance-"));
    return {
      open: async () => new SQLiteStorageDriver({ path: path.join(dir, "tasks.db") }),
      teardown: () => rm(dir, { recursive: true, force: true }),
    };
  },
});
