import { runWorkload, startRedis } from "@taskstore/test-services";
import { afterAll, describe, expect, it } from "vitest";
import { uniquePrefix } from "./helpers.js";

const server = await startRedis();
afterAll(() => server.stop());

describe("RedisStorageDriver across processes", () => {
  it("four processes doing 100 mixed operations each on one store lose nothing", async () => {
    const { reports, problems } = await runWorkload({
      core: import.meta.resolve("@taskstore/core"),
      driver: {
        module: import.meta.resolve("@taskstore/driver-redis"),
        export: "RedisStorageDriver",
        options: { url: server.url, prefix: uniquePrefix("procs") },
      },
      processes: 4,
      operations: 100,
      concurrency: 1,
      timeoutMs: 120_000,
    });
    expect(problems).toEqual([]);
    expect(reports).toHaveLength(4);
  });
});
