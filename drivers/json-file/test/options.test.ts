import { mkdir, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { JSONFileStorageDriver, type JSONFileStorageDriverOptions } from "../src/index.js";
import { tempDir } from "./helpers.js";

let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
  vi.restoreAllMocks();
});

/** A store whose lock folder was left 5 s ago by a process on another host (so only its age can free it). */
async function storeWithOldForeignLock(): Promise<string> {
  const { dir, cleanup } = await tempDir();
  cleanups.push(cleanup);
  const lockDir = path.join(dir, ".tasks.lock");
  await mkdir(lockDir);
  await writeFile(path.join(lockDir, "holder.json"), JSON.stringify({ pid: 999_999_999, host: "another-host", since: 0, token: "t" }));
  const old = new Date(Date.now() - 5_000);
  await utimes(lockDir, old, old);
  return path.join(dir, "tasks.json");
}

/** Whether `acquireLock()` takes over the 5 s old lock within 300 ms under `options`. */
async function takesOver(options: JSONFileStorageDriverOptions): Promise<boolean> {
  const driver = new JSONFileStorageDriver({ path: await storeWithOldForeignLock(), lockTimeoutMs: 300, ...options });
  await driver.initialize();
  try {
    await driver.acquireLock();
    return true;
  } catch (error) {
    expect(error).toMatchObject({ code: "LOCK_TIMEOUT" });
    return false;
  } finally {
    await driver.close();
  }
}

/** The deprecation warnings among what `process.emitWarning` was called with. */
const deprecations = (spy: { mock: { calls: unknown[][] } }) =>
  spy.mock.calls.filter((call) => (call[1] as { code?: string } | undefined)?.code === "TASKSTORE_DEPRECATED_OPTION");

describe("JSONFileStorageDriver options", () => {
  it("lockExpiryMs sets how old an abandoned lock must be before it is taken over (default 10 s)", async () => {
    expect(await takesOver({})).toBe(false);
    expect(await takesOver({ lockExpiryMs: 2_000 })).toBe(true);
  });

  it("the deprecated staleMs still works as lockExpiryMs, and warns once per process with TASKSTORE_DEPRECATED_OPTION", async () => {
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => undefined);
    expect(await takesOver({ staleMs: 2_000 })).toBe(true);
    expect(await takesOver({ staleMs: 2_000 })).toBe(true);
    const calls = deprecations(warn);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.[0]).toMatch(/^json-file: the option staleMs is deprecated.*lockExpiryMs/);
  });

  it("staleMs and lockExpiryMs with different values are VALIDATION; the same value is accepted", () => {
    expect(() => new JSONFileStorageDriver({ path: "/tmp/x/tasks.json", staleMs: 2_000, lockExpiryMs: 3_000 })).toThrow(
      expect.objectContaining({ code: "VALIDATION", issues: [expect.objectContaining({ path: ["staleMs"] })] }),
    );
    expect(() => new JSONFileStorageDriver({ path: "/tmp/x/tasks.json", staleMs: 3_000, lockExpiryMs: 3_000 })).not.toThrow();
  });
});
