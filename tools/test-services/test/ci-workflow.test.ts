import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// The hosted-CI workflow cannot run here: its syntax is checked against the workflow schema by
// action-validator (from npm, pinned), and what it runs against the README.

const root = fileURLToPath(new URL("../../..", import.meta.url));
const workflow = join(root, ".github/workflows/ci.yml");
const VALIDATOR = "@action-validator/cli@0.6.0";

function validate(file: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile("npx", ["--yes", VALIDATOR, file], { cwd: root, timeout: 120_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, output: stdout + stderr });
    });
  });
}

describe(".github/workflows/ci.yml", () => {
  it("is a valid workflow (action-validator), and a broken copy is not", async () => {
    const valid = await validate(workflow);
    expect(valid.output).toBe("");
    expect(valid.code).toBe(0);
    // The validator does check: the same file with one key misspelt fails.
    const dir = await mkdtemp(join(tmpdir(), "ci-workflow-"));
    try {
      const broken = join(dir, "ci.yml");
      await writeFile(broken, (await readFile(workflow, "utf8")).replace("runs-on:", "runs_on:"));
      const invalid = await validate(broken);
      expect(invalid.code).not.toBe(0);
      expect(invalid.output).toMatch(/runs_on/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);

  it("runs the README's test command, and the container pass on each server version's official image", async () => {
    const text = await readFile(workflow, "utf8");
    const readme = await readFile(join(root, "README.md"), "utf8");
    const command = "bash scripts/setup.sh && pnpm test:all";
    expect(readme).toContain(command);
    expect(text).toContain(`run: ${command}`);
    expect(text).toContain("image: node:20-bookworm");
    expect(text).toContain("TASKSTORE_TEST_IMAGES: official");
    expect(text).toContain("run: bash scripts/test-containers.sh");
    const pairs = [...text.matchAll(/- \{ redis: "([\d.]+)", postgres: "(\d+)" \}/g)].map((m) => [m[1], m[2]]);
    expect(new Set(pairs.map(([redis]) => redis))).toEqual(new Set(["6.2", "7", "8"]));
    expect(new Set(pairs.map(([, postgres]) => postgres))).toEqual(new Set(["13", "14", "15", "16", "17"]));
  });
});
