import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describeStorageDriver } from "@taskstore/conformance";
import { JSONFileStorageDriver } from "../src/index.js";

describeStorageDriver({
  name: "json-file",
  async setup() {
    const dir = await mkdtemp(path.join(os.tmpdir(), "taskstore-json-conformance-"));
    return {
      open: async () => new JSONFileStorageDriver({ path: path.join(dir, "tasks.json") }),
      teardown: () => rm(dir, { recursive: true, force: true }),
    };
  },
});
