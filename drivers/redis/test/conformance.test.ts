import { describeStorageDriver } from "@taskstore/conformance";
import { startRedis } from "@taskstore/test-services";
import { afterAll } from "vitest";
import { conformanceSetup } from "./helpers.js";

const server = await startRedis();
afterAll(() => server.stop());

describeStorageDriver({ name: "redis (single server)", setup: conformanceSetup({ url: server.url }) });
