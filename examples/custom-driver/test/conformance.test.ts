import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describeStorageDriver } from "@taskstore/conformance";
import { FolderStorageDriver } from "@taskstore/example-custom-driver";

describeStorageDriver({
  name: "folder (example, six methods)",
  setup: async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "taskstore-folder-"));
    return { open: async () => new FolderStorageDriver(dir), teardown: () => rm(dir, { recursive: true, force: true }) };
  },
});
