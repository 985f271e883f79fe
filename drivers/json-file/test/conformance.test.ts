import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describeStorageDriver, folderBytes } from "@taskstore/conformance";
import { beforeAll } from "vitest";
import { JSONFileStorageDriver } from "../src/index.js";
import { assertBuilt } from "./helpers.js";

// Child processes open the store through the built package.
beforeAll(assertBuilt);

describeStorageDriver({
  name: "json-file",
  async setup() {
    const dir = await mkdtemp(path.join(os.tmpdir(), "taskstore-json-conformance-"));
    const file = path.join(dir, "tasks.json");
    return {
      open: async () => new JSONFileStorageDriver({ path: file }),
      teardown: () => rm(dir, { recursive: true, force: true }),
      readRaw: () => folderBytes(dir),
      child: { module: import.meta.resolve("@taskstore/driver-json-file"), export: "JSONFileStorageDriver", args: [{ path: file }] },
    };
  },
});
