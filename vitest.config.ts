import { defineConfig } from "vitest/config";

// vitest 5's error summary calls Map.groupBy, which Node 20 lacks (Node 21+): without this, a
// failing test crashes the reporter instead of being reported.
if (typeof (Map as { groupBy?: unknown }).groupBy !== "function") {
  Object.defineProperty(Map, "groupBy", {
    configurable: true,
    writable: true,
    value<T, K>(items: Iterable<T>, key: (item: T, index: number) => K): Map<K, T[]> {
      const groups = new Map<K, T[]>();
      let index = 0;
      for (const item of items) {
        const k = key(item, index++);
        const group = groups.get(k);
        if (group) group.push(item);
        else groups.set(k, [item]);
      }
      return groups;
    },
  });
}

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
