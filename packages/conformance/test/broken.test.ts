import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// Each deliberately broken driver of broken/drivers.mjs runs the groups that must catch it, in a
// vitest run of its own (the suite failing is the point), and the test named here must fail.
// The sound driver they all derive from runs the same groups and must pass them: the failures
// are the drivers', not the harness's.

const here = path.dirname(fileURLToPath(import.meta.url));
const vitestBin = path.join(path.dirname(createRequire(import.meta.url).resolve("vitest/package.json")), "vitest.mjs");

interface Outcome {
  title: string;
  status: string;
}

async function runSuite(driver: string, groups: string[]): Promise<Outcome[]> {
  const dir = await mkdtemp(path.join(tmpdir(), "taskstore-broken-run-"));
  const report = path.join(dir, "report.json");
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [vitestBin, "run", "--config", path.join(here, "broken", "vitest.config.ts"), "--reporter=json", `--outputFile=${report}`],
        { env: { ...process.env, BROKEN_DRIVER: driver, BROKEN_GROUPS: groups.join(",") }, stdio: ["ignore", "ignore", "pipe"] },
      );
      let err = "";
      child.stderr.on("data", (chunk) => {
        err += chunk;
      });
      child.on("error", reject);
      child.on("close", (code) =>
        code === 0 || code === 1 ? resolve() : reject(new Error(`vitest exited with ${code}: ${err.slice(-2_000)}`)),
      );
    });
    const json = JSON.parse(await readFile(report, "utf8")) as { testResults: { assertionResults: Outcome[] }[] };
    return json.testResults.flatMap((file) => file.assertionResults.map(({ title, status }) => ({ title, status })));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const cases: [driver: string, groups: string[], mustFail: string][] = [
  ["ProcessLocalLockDriver", ["processes"], "several processes making mixed calls on one store lose nothing"],
  ["ProcessLocalLockDriver", ["processes"], "while a child process holds acquireLock()"],
  ["NonAtomicSaveDriver", ["atomicity"], "never see a store half written by saveData()"],
  ["NoopBackupDriver", ["backup"], "a backup is verified, not assumed"],
  ["SilentWatchDriver", ["watching"], "watch() reports a change by another instance and by another process"],
  ["SilentWatchDriver", ["watching"], "a TaskManager sees another process's change"],
  ["StaleLoadDriver", ["processes"], "several processes making mixed calls on one store lose nothing"],
  ["AckBeforeDurableDriver", ["crashes"], "a writer SIGKILLed at random moments loses no acknowledged write"],
];

describe("the suite fails deliberately broken drivers", { timeout: 240_000 }, () => {
  const runs = new Map<string, Promise<Outcome[]>>();
  const outcomes = (driver: string, groups: string[]) => {
    const key = `${driver}:${groups.join(",")}`;
    if (!runs.has(key)) runs.set(key, runSuite(driver, groups));
    return runs.get(key) as Promise<Outcome[]>;
  };

  for (const [driver, groups, mustFail] of cases) {
    it(`${driver}: "${mustFail}" fails`, async () => {
      const results = await outcomes(driver, groups);
      const matching = results.filter((result) => result.title.includes(mustFail));
      expect(matching.length).toBeGreaterThan(0);
      expect(matching.map((result) => result.status)).toEqual(matching.map(() => "failed"));
    });
  }

  it("the sound driver they derive from passes the same groups", async () => {
    const groups = [...new Set(cases.flatMap(([, g]) => g))];
    const results = await outcomes("SoundFileDriver", groups);
    expect(results.filter((result) => result.status === "failed").map((result) => result.title)).toEqual([]);
    expect(results.filter((result) => result.status === "passed").length).toBeGreaterThan(3);
  });
});
