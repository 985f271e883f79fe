import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PostgresStorageDriver, type PostgresStorageDriverOptions } from "@taskstore/driver-postgres";
import pg from "pg";

const here = path.dirname(fileURLToPath(import.meta.url));
const packageDir = path.resolve(here, "..");
let counter = 0;

/** A schema name no other test (or test file, or run) uses. */
export function freshSchema(): string {
  counter++;
  return `t${process.pid}_${Date.now().toString(36)}_${counter}`;
}

export function driverOn(url: string, schema: string, options: PostgresStorageDriverOptions = {}): PostgresStorageDriver {
  return new PostgresStorageDriver({ connectionString: url, schema, ...options });
}

/** Drops a store's schema with its backup and moved-aside copies. */
export async function dropStore(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ nspname: string }>(
      "SELECT nspname FROM pg_namespace WHERE nspname = $1 OR nspname LIKE $1 || '\\_\\_%'",
      [schema],
    );
    for (const row of rows) await client.query(`DROP SCHEMA "${row.nspname}" CASCADE`);
  } finally {
    await client.end();
  }
}

/** Child processes run the built package: build it once per test file. */
export function buildPackage(): void {
  execFileSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: packageDir, stdio: "inherit" });
}

/** Runs a fixture with plain node; resolves with its stdout once it exits with code 0. */
export function runFixture(name: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(here, "fixtures", name), ...args], { cwd: packageDir });
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
  const child = spawn(process.execPath, [path.join(here, "fixtures", name), ...args], {
    cwd: packageDir,
    stdio: ["pipe", "pipe", "inherit"],
  });
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
