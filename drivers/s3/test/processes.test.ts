import { type StoredTask, TaskRepository, TaskStoreError } from "@taskstore/core";
import { S3StorageDriver } from "@taskstore/driver-s3";
import { type S3Server, startS3 } from "@taskstore/test-services";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FaultProxy, startFaultProxy } from "./fault-proxy.js";
import { driverOptions, uniquePrefix } from "./helpers.js";

let server: S3Server;
let bucket: string;
beforeAll(async () => {
  server = await startS3();
  bucket = await server.createBucket();
});
afterAll(() => server?.stop());

async function loadAll(prefix: string): Promise<StoredTask[]> {
  const repository = new TaskRepository({ driver: new S3StorageDriver(driverOptions(server, bucket, prefix)) });
  try {
    return await repository.loadAll();
  } finally {
    await repository.close();
  }
}

// The multi-process workload is the conformance suite's ("several processes on one store").

describe("through a fault-injecting proxy (503s, delays, dropped connections, unanswered requests)", () => {
  it("every write resolves or fails with STORAGE_UNAVAILABLE, and every acknowledged write is in the store", async () => {
    const prefix = uniquePrefix("faults");
    let proxy: FaultProxy | undefined;
    proxy = await startFaultProxy(server.endpoint, { unavailable: 0, dropBefore: 0, dropAfter: 0, hang: 0, maxDelayMs: 0 });
    const faulty = new TaskRepository({
      driver: new S3StorageDriver({
        ...driverOptions(server, bucket, prefix),
        endpoint: proxy.endpoint,
        maxAttempts: 3,
        requestTimeoutMs: 2_000,
      }),
    });
    try {
      await faulty.initialize();
      proxy.faults = { unavailable: 0.12, dropBefore: 0.06, dropAfter: 0.06, hang: 0.015, maxDelayMs: 30 };
      const acknowledged = new Map<string, string[]>();
      const outcomes = { ok: 0, unavailable: 0 };
      const other: unknown[] = [];
      // At least 80 operations, and on until more than 40 were acknowledged (the faults are random:
      // a run with 40 or fewer would check too little), at most 200.
      for (let i = 0; i < 200 && (i < 80 || outcomes.ok <= 40); i++) {
        const id = `t${i % 15}`;
        try {
          if (!acknowledged.has(id)) {
            await faulty.save({
              id,
              title: `task ${id}`,
              status: "pending",
              progress: { percent: 0 },
              metadata: {},
              createdAt: 1,
              updatedAt: 1,
              children: [],
              logs: [],
            });
            acknowledged.set(id, []);
          } else {
            const line = `line ${i}`;
            await faulty.apply([{ type: "append", id, entries: [{ timestamp: i, output: line, type: "log" }], at: i }]);
            acknowledged.get(id)?.push(line);
          }
          outcomes.ok++;
        } catch (error) {
          if (TaskStoreError.hasCode(error, "STORAGE_UNAVAILABLE")) outcomes.unavailable++;
          else other.push(error);
        }
      }
      expect(other).toEqual([]);
      expect(proxy.counts.unavailable + proxy.counts.dropBefore + proxy.counts.dropAfter).toBeGreaterThan(12);
      expect(proxy.counts.hang).toBeGreaterThan(0);
      expect(outcomes.ok).toBeGreaterThan(40);
      proxy.faults = { unavailable: 0, dropBefore: 0, dropAfter: 0, hang: 0, maxDelayMs: 0 };
      const stored = new Map((await loadAll(prefix)).map((task) => [task.id, task]));
      for (const [id, lines] of acknowledged) {
        // An acknowledged task must be there: a missing one is a lost write, not an empty log.
        expect(stored.has(id), `acknowledged task ${id} is stored`).toBe(true);
        const outputs = stored.get(id)?.logs.map((entry) => entry.output) ?? [];
        // Acknowledged entries are all there, in order; a failed (unacknowledged) append may or may not have landed.
        expect(
          outputs.filter((line) => lines.includes(line)),
          `log of ${id}`,
        ).toEqual(lines);
        expect(new Set(outputs).size, `no entry of ${id} stored twice`).toBe(outputs.length);
      }
    } finally {
      await faulty.close().catch(() => undefined);
      await proxy.close();
      proxy = undefined;
    }
  }, 240_000);
});
