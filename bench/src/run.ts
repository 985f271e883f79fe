/**
 * Runs the benchmark suites and prints one table. Not a test: nothing here asserts a speed.
 *
 *   pnpm bench                      every suite
 *   pnpm bench -- --quick json-file  a quick run of one suite
 */
import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { BenchRow, BenchSuite } from "./types.js";

const SUITES = ["core", "json-file", "sqlite", "redis", "postgres", "s3", "sealing", "backups"] as const;

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const chosen = args.filter((arg) => !arg.startsWith("--"));
const suites = chosen.length > 0 ? chosen : [...SUITES];

const rows: BenchRow[] = [];
for (const name of suites) {
  const started = Date.now();
  process.stderr.write(`bench: ${name}${quick ? " (quick)" : ""}…\n`);
  const { run } = (await import(`./${name}.js`)) as { run: BenchSuite };
  rows.push(...(await run({ quick })));
  process.stderr.write(`bench: ${name} done in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}

const table = render(rows);
const header = `Run ${new Date().toISOString()} on ${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, Node ${process.version}${quick ? " (quick)" : ""}`;
console.log(`${header}\n\n${table}`);
const results = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "results");
await mkdir(results, { recursive: true });
// A full run of every suite is latest.md; a full run of some suites is latest-<names>.md, so it
// never replaces the whole table with a part of it.
const name = quick ? "quick.md" : chosen.length > 0 ? `latest-${chosen.join("-")}.md` : "latest.md";
await writeFile(path.join(results, name), `${header}\n\n${table}\n`);

/** One markdown table: each scenario's rows with ops/s and the ratio to the scenario's slowest subject. */
function render(all: BenchRow[]): string {
  const lines = ["| scenario | subject | ops/s | median latency | × slowest | note |", "|---|---|---:|---:|---:|---|"];
  const scenarios = [...new Set(all.map((row) => row.scenario))];
  for (const scenario of scenarios) {
    const group = all.filter((row) => row.scenario === scenario);
    const slowest = Math.min(...group.map((row) => row.opsPerSec).filter((v) => v > 0));
    for (const row of group) {
      lines.push(
        `| ${scenario} | ${row.subject} | ${format(row.opsPerSec)} | ${row.latencyMs === undefined ? "" : `${row.latencyMs.toFixed(2)} ms`} | ${
          slowest > 0 ? (row.opsPerSec / slowest).toFixed(1) : ""
        } | ${row.note ?? ""} |`,
      );
    }
  }
  return lines.join("\n");
}

function format(value: number): string {
  return value >= 100 ? Math.round(value).toLocaleString("en") : value.toFixed(1);
}
