import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { relative } from "node:path";
import type { Reporter, TestModule } from "vitest/node";

/**
 * The container pass's summary (scripts/test-containers.sh): per driver, how many tests ran
 * against servers in containers, how many containers the tests started (from the ledger
 * container.ts appends to), and every skipped test with its reason. Writes its verdict to
 * `TASKSTORE_CONTAINER_VERDICT`: "ok", or what is wrong: a driver with no test or no container,
 * or a test skipped for any reason but a capability the driver does not declare.
 */

/** Skips the conformance suite makes for what a driver does not declare: never about an engine. */
const DECLARED = [
  /^the driver does not declare: /,
  /^the driver declares none of: /,
  /^the driver declares no specificationVersion/,
  /^processes: false: /,
  /^the harness cannot restart this store's server/,
];

interface Row {
  files: Set<string>;
  tests: number;
  passed: number;
  failed: number;
  skipped: number;
  containers: number;
  images: Set<string>;
}

const root = process.cwd();

function groupOf(file: string): string {
  const path = relative(root, file);
  const match = /^(drivers|tools)\/([^/]+)\//.exec(path);
  return match ? (match[2] as string) : path;
}

export default class ContainerPassReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const expected = (process.env.TASKSTORE_CONTAINER_DRIVERS ?? "redis,postgres,s3").split(",").filter(Boolean);
    const rows = new Map<string, Row>();
    const row = (group: string): Row => {
      let found = rows.get(group);
      if (!found) {
        found = { files: new Set(), tests: 0, passed: 0, failed: 0, skipped: 0, containers: 0, images: new Set() };
        rows.set(group, found);
      }
      return found;
    };
    const skips: { group: string; name: string; note: string; declared: boolean }[] = [];
    for (const module of modules) {
      const group = groupOf(module.moduleId);
      const r = row(group);
      r.files.add(relative(root, module.moduleId));
      for (const test of module.children.allTests()) {
        const result = test.result();
        r.tests++;
        if (result.state === "passed") r.passed++;
        else if (result.state === "failed") r.failed++;
        else if (result.state === "skipped") {
          r.skipped++;
          const note = result.note ?? "";
          skips.push({ group, name: test.fullName, note, declared: DECLARED.some((pattern) => pattern.test(note)) });
        }
      }
    }
    const ledger = process.env.TASKSTORE_CONTAINER_LEDGER;
    if (ledger && existsSync(ledger)) {
      for (const line of readFileSync(ledger, "utf8").split("\n")) {
        if (!line.trim()) continue;
        const entry = JSON.parse(line) as { file: string; image: string };
        const r = row(groupOf(entry.file));
        r.containers++;
        r.images.add(entry.image);
      }
    }

    const problems: string[] = [];
    for (const driver of expected) {
      const r = rows.get(driver);
      if (!r || r.tests === 0) problems.push(`${driver}: no test ran`);
      else if (r.containers === 0) problems.push(`${driver}: its tests started no container`);
    }
    for (const skip of skips) {
      if (!skip.declared) problems.push(`${skip.group}: "${skip.name}" was skipped (${skip.note || "no reason given"})`);
    }

    const lines: string[] = [];
    const images = process.env.TASKSTORE_TEST_IMAGES ?? "official";
    lines.push(
      "",
      `container pass: tests run against servers in containers (images: ${images}, engine: ${process.env.DOCKER_HOST ?? "default socket"})`,
    );
    const header = ["driver", "files", "tests", "passed", "failed", "skipped", "containers", "images"];
    const table = [header];
    for (const [group, r] of [...rows.entries()].sort()) {
      table.push([
        group,
        String(r.files.size),
        String(r.tests),
        String(r.passed),
        String(r.failed),
        String(r.skipped),
        String(r.containers),
        [...r.images].join(" "),
      ]);
    }
    const widths = header.map((_, i) => Math.max(...table.map((cells) => (cells[i] as string).length)));
    for (const cells of table) {
      const padded = cells.map((cell, i) => (i === 0 || i === 7 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number)));
      lines.push(`  ${padded.join("  ")}`.trimEnd());
    }
    for (const [group, r] of [...rows.entries()].sort()) {
      const byDesign = skips.filter((skip) => skip.group === group && skip.declared).length;
      const other = skips.filter((skip) => skip.group === group && !skip.declared).length;
      lines.push(
        `  ${group}: ${r.passed} of ${r.tests} tests passed against servers in containers (${r.containers} containers of ${[...r.images].join(", ") || "no image"}); ${r.failed} failed; ${byDesign} skipped by design, ${other} for want of an engine or a server`,
      );
    }
    for (const skip of skips) {
      lines.push(
        `  skipped ${skip.declared ? "by design (the suite's reason, not an engine)" : "NOT ALLOWED"}: [${skip.group}] ${skip.name}: ${skip.note || "no reason"}`,
      );
    }
    const engineSkips = skips.filter((skip) => !skip.declared).length;
    lines.push(`  skipped for want of an engine or a server: ${engineSkips}`);
    lines.push(problems.length === 0 ? "container pass: verdict ok" : `container pass: verdict FAILED:\n  ${problems.join("\n  ")}`, "");
    process.stdout.write(`${lines.join("\n")}\n`);
    const verdict = process.env.TASKSTORE_CONTAINER_VERDICT;
    if (verdict) writeFileSync(verdict, problems.length === 0 ? "ok\n" : `${problems.join("\n")}\n`);
  }
}
