import { readFile } from "node:fs/promises";
import { expect, it } from "vitest";

// The conformance README shows a third party's whole test file; this package runs exactly that
// file in CI (test/conformance.test.ts), so the README cannot drift from code that works.
it("the conformance README's example is this package's conformance test, verbatim", async () => {
  const readme = await readFile(new URL("../../../packages/conformance/README.md", import.meta.url), "utf8");
  const test = await readFile(new URL("./conformance.test.ts", import.meta.url), "utf8");
  const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  expect(block?.trim()).toBe(test.trim());
});

it("the conformance README's example imports nothing private: only node:, the suite and the author's own files", async () => {
  const readme = await readFile(new URL("../../../packages/conformance/README.md", import.meta.url), "utf8");
  const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
  const specifiers = [...block.matchAll(/from "([^"]+)"/g)].map((match) => match[1] as string);
  expect(specifiers.length).toBeGreaterThan(0);
  for (const specifier of specifiers) {
    expect(specifier.startsWith("node:") || specifier === "@taskstore/conformance" || specifier.startsWith(".")).toBe(true);
  }
});
