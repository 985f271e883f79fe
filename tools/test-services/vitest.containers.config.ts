import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";
// (This file is outside the package's typecheck, src and test: it imports the root config.)
import base from "../../vitest.config.js";

// The container pass (scripts/test-containers.sh): the server drivers' suites once more, with
// every server in a container, plus the proof that they were. TASKSTORE_CONTAINER_DRIVERS picks
// the drivers (default: all three).
const drivers = (process.env.TASKSTORE_CONTAINER_DRIVERS ?? "redis,postgres,s3").split(",").filter(Boolean);
const files: Record<string, string[]> = {
  redis: ["drivers/redis/test/**/*.test.ts", "tools/test-services/test/redis.test.ts"],
  postgres: ["drivers/postgres/test/**/*.test.ts"],
  s3: ["drivers/s3/test/**/*.test.ts"],
};

// The root config's settings (timeouts, two workers, its Node 20 fix), with this pass's files:
// spread, not mergeConfig, which would add the root's include list to this one.
export default defineConfig({
  ...base,
  root: fileURLToPath(new URL("../..", import.meta.url)),
  test: {
    ...base.test,
    include: [...drivers.flatMap((driver) => files[driver] ?? []), "tools/test-services/test/container-pass.test.ts"],
    exclude: [
      "**/node_modules/**",
      "**/dist/**",
      // Not about a server: the npm fake the S3 driver refuses, and startS3()'s error without any server.
      "drivers/s3/test/s3rver.test.ts",
      "drivers/s3/test/test-services.test.ts",
    ],
    reporters: ["default", fileURLToPath(new URL("./test/container-pass/reporter.ts", import.meta.url))],
  },
});
