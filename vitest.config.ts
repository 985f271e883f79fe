import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["{packages,drivers,tools,examples,bench}/*/test/**/*.test.ts", "examples/*/README.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Driver suites start real servers: one file at a time per worker, two workers on two cores.
    maxWorkers: 2,
    reporters: process.env.CI ? ["default"] : ["default"],
  },
});
