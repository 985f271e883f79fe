import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TaskStoreError } from "@taskstore/core";
import { S3StorageDriver } from "@taskstore/driver-s3";
import S3rver from "s3rver";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// s3rver is an npm fake of S3 that silently ignores If-None-Match and If-Match. It is here only
// to prove the driver refuses such a server; every other test runs against real radosgw.
let server: { close(): Promise<void> };
let dir: string;
let endpoint: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "taskstore-s3rver-"));
  const s3rver = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: "fake", configs: [] }],
  });
  const { port } = (await s3rver.run()) as { port: number };
  server = s3rver;
  endpoint = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

const options = () => ({
  bucket: "fake",
  prefix: "store/",
  endpoint,
  credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
  maxAttempts: 1,
});

describe("initialize() against a server that ignores conditional writes (s3rver)", () => {
  it("refuses it with UNSUPPORTED (not retried as an outage), saying that it ignores If-None-Match", async () => {
    const driver = new S3StorageDriver(options());
    try {
      const failure = await driver.initialize().then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(TaskStoreError.hasCode(failure, "UNSUPPORTED")).toBe(true);
      expect((failure as Error).message).toMatch(/ignores If-None-Match/);
      expect((failure as Error).message).toMatch(/unsafeAllowUnconditionalWrites/);
    } finally {
      await driver.close();
    }
  });

  it("accepts it only with the explicit unsafeAllowUnconditionalWrites opt-out", async () => {
    const driver = new S3StorageDriver({ ...options(), unsafeAllowUnconditionalWrites: true });
    try {
      await driver.initialize();
      await driver.saveData({ version: "1.0.0", tasks: [], metadata: { lastUpdated: 1, totalTasks: 0 } });
      expect((await driver.loadData()).tasks).toEqual([]);
    } finally {
      await driver.close();
    }
  });
});
