import { driverErrors, numberOption, resolveOption, sleep, TaskStoreError } from "@taskstore/core";
import { afterEach, describe, expect, it, vi } from "vitest";

interface Options {
  lockExpiryMs?: number;
  /** @deprecated */
  staleMs?: number;
  maxConflictRetries?: number;
  /** @deprecated */
  maxAttempts?: number;
}

/** The deprecation warnings among what `process.emitWarning` was called with. */
const deprecations = (spy: { mock: { calls: unknown[][] } }) =>
  spy.mock.calls.filter((call) => (call[1] as { code?: string } | undefined)?.code === "TASKSTORE_DEPRECATED_OPTION");

describe("the driver kit's options", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("resolveOption() takes the canonical name, and neither given is undefined", () => {
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => undefined);
    expect(resolveOption<Options, "lockExpiryMs">({ lockExpiryMs: 5 }, "lockExpiryMs", "staleMs", "kit-a")).toBe(5);
    expect(resolveOption<Options, "lockExpiryMs">({}, "lockExpiryMs", "staleMs", "kit-a")).toBeUndefined();
    expect(resolveOption<Options, "lockExpiryMs">(undefined, "lockExpiryMs", "staleMs", "kit-a")).toBeUndefined();
    expect(deprecations(warn)).toEqual([]);
  });

  it("resolveOption() accepts the deprecated alias and warns once per driver and alias, with the code", () => {
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => undefined);
    for (let i = 0; i < 3; i++) expect(resolveOption<Options, "lockExpiryMs">({ staleMs: 7 }, "lockExpiryMs", "staleMs", "kit-b")).toBe(7);
    const calls = deprecations(warn);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.[0]).toMatch(/^kit-b: the option staleMs is deprecated .*use lockExpiryMs/);
    expect(calls[0]?.[1]).toEqual({ type: "DeprecationWarning", code: "TASKSTORE_DEPRECATED_OPTION" });
  });

  it("resolveOption() converts an alias that counts differently (attempts are retries + 1)", () => {
    vi.spyOn(process, "emitWarning").mockImplementation(() => undefined);
    const alias = { name: "maxAttempts" as const, toCanonical: (attempts: number) => attempts - 1 };
    expect(resolveOption<Options, "maxConflictRetries">({ maxAttempts: 50 }, "maxConflictRetries", alias, "kit-c")).toBe(49);
    // Both names, the same meaning: accepted.
    expect(
      resolveOption<Options, "maxConflictRetries">({ maxAttempts: 5, maxConflictRetries: 4 }, "maxConflictRetries", alias, "kit-c"),
    ).toBe(4);
  });

  it("resolveOption() refuses the old and the new name with different values as VALIDATION naming both", () => {
    vi.spyOn(process, "emitWarning").mockImplementation(() => undefined);
    let thrown: unknown;
    try {
      resolveOption<Options, "lockExpiryMs">({ lockExpiryMs: 5, staleMs: 6 }, "lockExpiryMs", "staleMs", "kit-d");
    } catch (error) {
      thrown = error;
    }
    expect(TaskStoreError.hasCode(thrown, "VALIDATION")).toBe(true);
    expect((thrown as Error).message).toMatch(/^kit-d: invalid input: staleMs: .*lockExpiryMs/);
  });

  it("numberOption() gives the default for undefined and refuses what is not a number of the rule as VALIDATION", () => {
    expect(numberOption(undefined, "lockTimeoutMs", "kit", 30_000)).toBe(30_000);
    expect(numberOption(0, "lockTimeoutMs", "kit", 30_000)).toBe(0);
    for (const bad of ["30s", -1, Number.NaN, Number.POSITIVE_INFINITY, null]) {
      expect(() => numberOption(bad, "lockTimeoutMs", "kit", 30_000)).toThrow(/^kit: invalid input: lockTimeoutMs: must be/);
    }
    expect(() => numberOption(1.5, "poolSize", "kit", 10, { min: 1, integer: true })).toThrow(/whole number of at least 1, not 1.5/);
    expect(() => numberOption(0, "poolSize", "kit", 10, { min: 1, integer: true })).toThrow(/poolSize/);
  });

  it("driverErrors().newerSchema() is VERSION_UNSUPPORTED with the driver's prefix, and invalidOption() VALIDATION", () => {
    const errors = driverErrors("mine");
    const newer = errors.newerSchema(3, 2, "the tables are at migration 3: upgrade the driver");
    expect(TaskStoreError.hasCode(newer, "VERSION_UNSUPPORTED")).toBe(true);
    expect(newer.message).toBe("mine: the tables are at migration 3: upgrade the driver");
    const invalid = errors.invalidOption("bucket", "is required");
    expect(TaskStoreError.hasCode(invalid, "VALIDATION")).toBe(true);
    expect(invalid.message).toBe("mine: invalid input: bucket: is required (option)");
  });

  it("sleep() resolves after about the time asked", async () => {
    const started = Date.now();
    await sleep(20);
    expect(Date.now() - started).toBeGreaterThanOrEqual(15);
  });
});
