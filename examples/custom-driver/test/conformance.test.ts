import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describeStorageDriver, folderBytes } from "@taskstore/conformance";
import { FolderStorageDriver } from "../src/folder-driver.js";

describeStorageDriver({
  name: "folder (example, six methods)",
  setup: async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "taskstore-folder-"));
    return {
      open: async () => new FolderStorageDriver(dir),
      teardown: () => rm(dir, { recursive: true, force: true }),
      readRaw: () => folderBytes(dir),
      // Child processes (plain node) open the same folder through the built driver.
      child: { module: new URL("../dist/folder-driver.js", import.meta.url).href, export: "FolderStorageDriver", args: [dir] },
      // No restore(): the suite reads the backup to check it.
      readBackup: async () => JSON.parse(await readFile(path.join(dir, "backup.json"), "utf8")),
    };
  },
});
