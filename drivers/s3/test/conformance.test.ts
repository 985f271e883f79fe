import { describeStorageDriver } from "@taskstore/conformance";
import { type S3Server, startS3 } from "@taskstore/test-services";
import { afterAll, beforeAll } from "vitest";
import { conformanceSetup } from "./helpers.js";

let server: S3Server;
let bucket: string;
beforeAll(async () => {
  server = await startS3();
  bucket = await server.createBucket();
});
afterAll(() => server?.stop());

describeStorageDriver({
  name: `s3 (${process.env.TASKSTORE_S3_ENDPOINT ? "env" : "radosgw"})`,
  // A short lease (documented option): a killed holder's lock is taken over once it expires.
  processes: { lockTakeoverMs: 10_000 },
  setup: conformanceSetup(
    () => server,
    () => bucket,
    { lockExpiryMs: 5_000 },
  ),
});
