import { describeStorageDriver } from "@taskstore/conformance";
import { type PostgresServer, startPostgres } from "@taskstore/test-services";
import { afterAll, beforeAll } from "vitest";
import { driverOn, dropStore, freshSchema } from "./helpers.js";

// The reopening group once more, on a server of its own with fsync on, which the suite stops with
// `pg_ctl -m immediate` (a crash) and starts again.
let server: PostgresServer;
beforeAll(async () => {
  server = await startPostgres({ dedicated: true, fsync: true });
});
afterAll(() => server?.stop());

describeStorageDriver({
  name: "postgres (crashed and restarted)",
  groups: ["reopening"],
  setup: async () => {
    const schema = freshSchema();
    return {
      open: async () => driverOn(server.url, schema),
      teardown: () => dropStore(server.url, schema),
      restart: async () => {
        await server.kill();
        await server.restart();
      },
    };
  },
});
