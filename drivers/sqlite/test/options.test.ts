import path from "node:path";
import { TaskStoreError } from "@taskstore/core";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SQLiteStorageDriver, type SQLiteStorageDriverOptions } from "../src/index.js";
import { tempDir } from "./helpers.js";

let cleanup: (() => void) | undefined;
afterEach(() => {
  cleanup?.();
  vi.restoreAllMocks();
});

function store(): string {
  const { dir, remove } = tempDir();
  cleanup = remove;
  return path.join(dir, "tasks.db");
}

/** How long the lock row that `acquireLock()` wrote lives: `expires - since`. */
async function lockLife(file: string, options: Partial<SQLiteStorageDriverOptions>): Promise<number> {
  const driver = new SQLiteStorageDriver({ path: file, ...options });
  await driver.initialize();
  await driver.acquireLock();
  const row = new Database(`${file}.lock`, { readonly: true });
  const { since, expires } = row.prepare("SELECT since, expires FROM lock").get() as { since: number; expires: number };
  row.close();
  await driver.close();
  return expires - since;
}

/** The deprecation warnings among what `process.emitWarning` was called with. */
const deprecations = (spy: { mock: { calls: unknown[][] } }) =>
  spy.mock.calls.filter((call) => (call[1] as { code?: string } | undefined)?.code === "TASKSTORE_DEPRECATED_OPTION");

describe("SQLiteStorageDriver options", () => {
  it("lockExpiryMs sets how long a lock row lives without renewal", async () => {
    expect(await lockLife(store(), { lockExpiryMs: 45_000 })).toBe(45_000);
  });

  it("the deprecated lockStaleMs still works, and warns once per process with TASKSTORE_DEPRECATED_OPTION", async () => {
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => undefined);
    const file = store();
    expect(await lockLife(file, { lockStaleMs: 40_000 })).toBe(40_000);
    expect(await lockLife(file, { lockStaleMs: 40_000 })).toBe(40_000);
    const calls = deprecations(warn);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.[0]).toMatch(/^sqlite: the option lockStaleMs is deprecated.*lockExpiryMs/);
  });

  it("lockStaleMs and lockExpiryMs with different values are VALIDATION", () => {
    expect(() => new SQLiteStorageDriver({ path: store(), lockStaleMs: 1_000, lockExpiryMs: 2_000 })).toThrow(
      expect.objectContaining({ code: "VALIDATION", message: expect.stringMatching(/lockStaleMs.*lockExpiryMs/) }),
    );
  });

  it("bad options are VALIDATION from the constructor, never a TypeError", () => {
    const file = store();
    const bad: unknown[] = [
      undefined,
      {},
      { path: file, database: new Database(":memory:") },
      { path: file, synchronous: "SOMETIMES" },
      { path: file, lockTimeoutMs: "30s" },
      { path: file, busyTimeoutMs: -1 },
      { path: file, lockExpiryMs: Number.NaN },
    ];
    for (const options of bad) {
      // A code, so never a TypeError (which has none).
      expect(() => new SQLiteStorageDriver(options as SQLiteStorageDriverOptions), JSON.stringify(options)).toThrow(
        expect.objectContaining({ code: "VALIDATION", message: expect.stringMatching(/^sqlite: invalid input: /) }),
      );
    }
  });

  it("backup() of a caller's in-memory database without backupPath is UNSUPPORTED, not an outage", async () => {
    const driver = new SQLiteStorageDriver({ database: new Database(":memory:") });
    await driver.initialize();
    await expect(driver.backup()).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "UNSUPPORTED"));
    await driver.close();
  });
});
