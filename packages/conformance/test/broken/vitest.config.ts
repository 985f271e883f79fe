import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";
// The repository's config installs the Map.groupBy polyfill vitest 5's reporter needs on Node 20.
import "../../../../vitest.config.js";

export default defineConfig({
  test: {
    root: fileURLToPath(new URL(".", import.meta.url)),
    include: ["broken.fixture.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
});
