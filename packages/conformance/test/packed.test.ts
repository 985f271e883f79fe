import { execFile } from "node:child_process";
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

// The suite as a third party gets it: @taskstore/core and @taskstore/conformance packed into
// tarballs and installed with npm into a plain project outside the workspace, with the oldest
// and the newest vitest the peer range declares that run on this Node (vitest 5 needs Node 22).

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const packages = path.resolve(here, "../..");
const VITESTS = Number(process.versions.node.split(".")[0]) >= 22 ? ["3.2.4", "5.1.0"] : ["3.2.4", "4.1.12"];

const work = await mkdtemp(path.join(tmpdir(), "taskstore-packed-"));
afterAll(() => rm(work, { recursive: true, force: true }));

let tarballs: Promise<string[]> | undefined;
/** Packs core and conformance once (their dist is built by the test command). */
function pack(): Promise<string[]> {
  tarballs ??= (async () => {
    const out = path.join(work, "tarballs");
    for (const name of ["core", "conformance"]) {
      await run("pnpm", ["pack", "--pack-destination", out], { cwd: path.join(packages, name) });
    }
    return (await readdir(out)).map((file) => path.join(out, file));
  })();
  return tarballs;
}

async function project(vitest: string): Promise<string> {
  const dir = path.join(work, `vitest-${vitest}`);
  await run("mkdir", ["-p", dir]);
  await writeFile(path.join(dir, "package.json"), JSON.stringify({ name: "outside-driver", private: true, type: "module" }));
  await copyFile(path.join(here, "broken", "drivers.mjs"), path.join(dir, "drivers.mjs"));
  await copyFile(path.join(here, "outside", "driver.test.mjs"), path.join(dir, "driver.test.mjs"));
  await run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", "-D", "-E", `vitest@${vitest}`, ...(await pack())], {
    cwd: dir,
    timeout: 300_000,
  });
  return dir;
}

async function vitestIn(dir: string, env: Record<string, string>): Promise<{ code: number; output: string; report: Report }> {
  const report = path.join(dir, "report.json");
  const args = ["vitest", "run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`];
  let code = 0;
  let output = "";
  try {
    const result = await run("npx", args, {
      cwd: dir,
      env: { ...process.env, ...env, CI: "true" },
      timeout: 600_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    output = result.stdout + result.stderr;
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    code = typeof failed.code === "number" ? failed.code : -1;
    output = (failed.stdout ?? "") + (failed.stderr ?? "");
  }
  return { code, output, report: JSON.parse(await readFile(report, "utf8")) as Report };
}

interface Report {
  numPassedTests: number;
  numFailedTests: number;
  testResults: { assertionResults: { title: string; status: string }[] }[];
}

describe("the suite from packed tarballs in a plain npm project", { timeout: 900_000 }, () => {
  for (const vitest of VITESTS) {
    it(`passes a sound driver and shows a broken driver's failures, with vitest ${vitest}`, async () => {
      const dir = await project(vitest);
      const sound = await vitestIn(dir, {});
      expect(sound.report.numFailedTests, sound.output.slice(-3_000)).toBe(0);
      expect(sound.report.numPassedTests).toBeGreaterThan(50);
      const titles = sound.report.testResults.flatMap((file) => file.assertionResults.map((result) => result.title));
      expect(titles.some((title) => title.includes("SIGKILLed at random moments"))).toBe(true);

      const broken = await vitestIn(dir, { DRIVER: "ProcessLocalLockDriver", GROUPS: "processes" });
      expect(broken.code).toBe(1);
      expect(broken.report.numFailedTests).toBeGreaterThan(0);
      // The reporter survives and tells the author what failed (vitest 5 on Node 20 crashed here).
      expect(broken.output).toContain("several processes making mixed calls on one store lose nothing");
      expect(broken.output).toMatch(/AssertionError/);
    });
  }
});
