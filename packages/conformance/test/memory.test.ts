import { randomUUID } from "node:crypto";
import { describeStorageDriver } from "@taskstore/conformance";
import { MemoryStorageDriver } from "@taskstore/core";

for (const incremental of [true, false]) {
  describeStorageDriver({
    name: `memory (${incremental ? "incremental" : "plain six methods"})`,
    // A memory store is a Map inside this process: another process cannot open it.
    processes: false,
    setup: async () => {
      const store = randomUUID();
      return {
        open: async () => new MemoryStorageDriver({ store, incremental, lockTimeoutMs: 5_000 }),
        teardown: async () => MemoryStorageDriver.drop(store),
        readRaw: async () => new MemoryStorageDriver({ store }).readRaw() ?? "",
      };
    },
  });
}
