import { type ChildProcess, execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PostgresStorageDriver, type PostgresStorageDriverOptions } from "@taskstore/driver-postgres";
import { runNodeScript, startNodeScript } from "@taskstore/test-services";
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
  return runNodeScript(path.join(here, "fixtures", name), args, { cwd: packageDir });
}

/** Starts a fixture with plain node and calls `onLine` for each line of its stdout. */
export function startFixture(name: string, args: string[], onLine: (line: string) => void): ChildProcess {
  return startNodeScript(path.join(here, "fixtures", name), args, onLine, { cwd: packageDir, stdin: "pipe" });
}

/** Every row of every table of a store's schemas (its own, backups, moved-aside), as text. */
export async function schemaRows(url: string, schema: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows: tables } = await client.query<{ schemaname: string; tablename: string }>(
      "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = $1 OR schemaname LIKE $1 || '\\_\\_%'",
      [schema],
    );
    const out: string[] = [];
    for (const { schemaname, tablename } of tables) {
      const { rows } = await client.query<{ row: string }>(`SELECT t::text AS row FROM "${schemaname}"."${tablename}" t`);
      out.push(...rows.map((r) => r.row));
    }
    return out.join("\n");
  } finally {
    await client.end();
  }
}
