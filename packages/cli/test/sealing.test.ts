import { randomBytes } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { json, makeHome, run } from "./helpers.js";

const key = () => randomBytes(32).toString("base64");
const SECRET = "deploy-token-4f9c-canary";

describe("encryption at rest from the command line", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  beforeAll(async () => {
    home = await makeHome();
  });
  afterAll(() => home?.cleanup());

  it("keys from TASKSTORE_KEY_FILE seal what is written, a missing key is exit 15, and reseal rotates", async () => {
    const store = `file:${path.join(home.dir, "sealed", "tasks.json")}`;
    const keyFile = path.join(home.dir, "keys");
    const old = key();
    await writeFile(keyFile, `# newest first\n${old}\n`, { mode: 0o600 });
    const sealed = { env: { ...home.env, TASKSTORE_KEY_FILE: keyFile } };
    const { id } = await json<{ id: string }>(["--store", store, "add", `release with ${SECRET}`], sealed);
    expect((await run(["--store", store, "log", id, `token ${SECRET}`], sealed)).code).toBe(0);
    for (const file of await readdir(path.join(home.dir, "sealed"))) {
      expect(await readFile(path.join(home.dir, "sealed", file), "utf8")).not.toContain(SECRET);
    }
    // No key, and a wrong one: exit 15, and nothing is written.
    const before = await readFile(path.join(home.dir, "sealed", "tasks.json"), "utf8");
    const missing = await run(["--store", store, "log", id, "without a key"], { env: home.env });
    expect(missing.code).toBe(15);
    expect(missing.stderr).toMatch(/sealed/);
    expect((await run(["--store", store, "list"], { env: { ...home.env, TASKSTORE_KEY: key() } })).code).toBe(15);
    expect(await readFile(path.join(home.dir, "sealed", "tasks.json"), "utf8")).toBe(before);
    // Rotation: a new key first, reseal, then the old key goes.
    const fresh = key();
    await writeFile(keyFile, `${fresh}\n${old}\n`);
    expect(await json(["--store", store, "reseal"], sealed)).toEqual({ tasks: 1 });
    await writeFile(keyFile, `${fresh}\n`);
    const shown = await json<{ title: string; logs: { output: string }[] }>(["--store", store, "show", id], sealed);
    expect(shown.title).toBe(`release with ${SECRET}`);
    expect(shown.logs.map((entry) => entry.output)).toEqual([`token ${SECRET}`]);
    // The key never reaches the output.
    const diagnose = await run(["--store", store, "diagnose", "--persistence"], sealed);
    expect(`${diagnose.stdout}${diagnose.stderr}`).not.toContain(fresh);
  });
});
