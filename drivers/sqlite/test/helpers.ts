import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

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

/** Runs a fixture with plain node; resolves with its stdout once it exits with code 0. */
export function runFixture(name: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fixture(name), ...args], { cwd: packageDir });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    child.stderr.on("data", (chunk) => {
      err += chunk;
    });
    child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${name} exited with ${code}: ${err}`))));
  });
}

/** Starts a fixture and calls `onLine` for each line of its stdout. */
export function startFixture(name: string, args: string[], onLine: (line: string) => void): ChildProcess {
  const child = spawn(process.execPath, [fixture(name), ...args], { cwd: packageDir, stdio: ["ignore", "pipe", "inherit"] });
  let buffer = "";
  child.stdout?.on("data", (chunk) => {
    buffer += chunk;
    let newline = buffer.indexOf("\n");
    while (newline >= 0) {
      onLine(buffer.slice(0, newline));
      buffer = buffer.slice(newline + 1);
      newline = buffer.indexOf("\n");
    }
  });
  return child;
}

export function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}
