import { describeStorageDriver } from "@taskstore/conformance";
import { startRedis } from "@taskstore/test-services";
import { afterAll } from "vitest";
import { conformanceSetup } from "./helpers.js";

// The reopening group once more, on a server of its own with appendonly (fsync always), which the
// suite kills and starts again: acknowledged data must survive the server, not only the instance.
const server = await startRedis({ dedicated: true, appendonly: true });
afterAll(() => server.stop());

const setup = conformanceSetup({ url: server.url });
describeStorageDriver({
  name: "redis (appendonly, killed and restarted)",
  groups: ["reopening"],
  setup: async () => ({
    ...(await setup()),
    restart: async () => {
      await server.kill();
      await server.restart();
    },
  }),
});
