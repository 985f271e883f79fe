import { describeStorageDriver } from "@taskstore/conformance";
import { type PostgresServer, startPostgres } from "@taskstore/test-services";
import { afterAll, beforeAll } from "vitest";
import { driverOn, dropStore, freshSchema, schemaRows } from "./helpers.js";

let server: PostgresServer;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(() => server?.stop());

describeStorageDriver({
  name: "postgres",
  setup: async () => {
    const schema = freshSchema();
    return {
      open: async () => driverOn(server.url, schema),
      teardown: () => dropStore(server.url, schema),
      readRaw: () => schemaRows(server.url, schema),
      child: {
        module: import.meta.resolve("@taskstore/driver-postgres"),
        export: "PostgresStorageDriver",
        args: [{ connectionString: server.url, schema }],
      },
    };
  },
});
