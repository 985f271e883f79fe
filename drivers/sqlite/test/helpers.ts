import { type ChildProcess, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { runNodeScript, startNodeScript } from "@taskstore/test-services";

const here = path.dirname(fileURLToPath(import.meta.url));
const packageDir = path.resolve(here, "..");

/** Child processes run the built package: build it once per test file. */
export function buildPackage(): void {
  execFileSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: packageDir, stdio: "inherit" });
}

export function tempDir(): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "taskstore-sqlite-test-"));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function fixture(name: string): string {
  return path.join(here, "fixtures", name);
}

/** Starts a fixture with plain node and calls `onLine` for each line of its stdout. */
export function startFixture(name: string, args: string[], onLine: (line: string) => void): ChildProcess {
  return startNodeScript(fixture(name), args, onLine, { cwd: packageDir });
}

export { exited } from "@taskstore/test-services";

/**
 * Runs a fixture with plain node to its end and returns its stdout. A child that does not end
 * (it blocked, say on a FIFO) is killed after `killAfterMs` and the promise rejects: a safety net
 * so a regression fails the test instead of hanging the run, not a timing assertion.
 */
export function runFixture(name: string, args: string[], killAfterMs = 30_000): Promise<string> {
  return runNodeScript(fixture(name), args, { cwd: packageDir, timeoutMs: killAfterMs });
}
