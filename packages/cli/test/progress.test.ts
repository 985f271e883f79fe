import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, inTerminal, json, makeHome, run, shellLine } from "./helpers.js";

// copy and migrate draw a progress bar (cli-progress) with the count, the rate and the time left,
// on stderr, only when stderr is a terminal (a real pseudo-terminal from util-linux `script`).
describe("progress bars on long work", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  let opts: { env: NodeJS.ProcessEnv };
  let legacy: string;
  beforeAll(async () => {
    home = await makeHome();
    opts = { env: home.env };
    legacy = path.join(home.dir, "todos.json");
    await writeFile(legacy, JSON.stringify(Array.from({ length: 450 }, (_, i) => ({ text: `todo ${i}`, completed: i % 3 === 0 }))));
  });
  afterAll(() => home.cleanup());

  const line = (args: string[], redirect = "") => `${shellLine([process.execPath, BIN, ...args])}${redirect}`;

  it("migrate --from and copy draw count, rate and ETA on a terminal's stderr, up to 450/450", async () => {
    const dir = path.join(home.dir, "tty");
    await mkdir(dir, { recursive: true });
    const [from, to] = [path.join(dir, "a.json"), path.join(dir, "b.json")];
    const migrated = await inTerminal(line(["--store", from, "migrate", "--from", legacy]), opts.env);
    expect(migrated.code).toBe(0);
    expect(migrated.output).toMatch(/migrate \[█+\] 100% \| 450\/450 todos \| \d+ todos\/s \| ETA \d+s/);
    expect(migrated.output).toContain(`imported 450 legacy todos from ${legacy}`);
    const copied = await inTerminal(line(["copy", "--from", from, "--to", to]), opts.env);
    expect(copied.code).toBe(0);
    expect(copied.output).toMatch(/copy \[░+\] 0% \| 0\/450 tasks/);
    expect(copied.output).toMatch(/copy \[█+\] 100% \| 450\/450 tasks \| \d+ tasks\/s \| ETA \d+s/);
  });

  it("the bar is on stderr: gone when stderr is not the terminal, there when only stdout is redirected; ASCII in a C locale", async () => {
    const dir = path.join(home.dir, "streams");
    await mkdir(dir, { recursive: true });
    const from = path.join(dir, "a.json");
    await run(["--store", from, "migrate", "--from", legacy], opts);
    const noStderr = await inTerminal(line(["copy", "--from", from, "--to", path.join(dir, "b.json")], " 2>/dev/null"), opts.env);
    expect(noStderr.output).not.toContain("tasks/s");
    expect(noStderr.output).toContain("copied 450 tasks");
    const noStdout = await inTerminal(line(["copy", "--from", from, "--to", path.join(dir, "c.json")], " >/dev/null"), opts.env);
    expect(noStdout.output).toMatch(/450\/450 tasks \| \d+ tasks\/s/);
    const ascii = await inTerminal(line(["copy", "--from", from, "--to", path.join(dir, "d.json")]), { ...opts.env, LANG: "C" });
    expect(ascii.output).toMatch(/copy \[=+\] 100% \| 450\/450 tasks/);
  });

  it("off a terminal nothing is drawn; migrate --from run twice imports each todo once", async () => {
    const store = path.join(home.dir, "piped", "tasks.json");
    await mkdir(path.dirname(store), { recursive: true });
    const first = await run(["--store", store, "migrate", "--from", legacy], opts);
    expect(first).toMatchObject({ code: 0, stderr: "" });
    expect(await json(["--store", store, "migrate", "--from", legacy], opts)).toEqual({ migrated: 0, from: legacy, skipped: 450 });
    expect((await json<{ tasks: unknown[] }>(["--store", store, "list", "--all"], opts)).tasks).toHaveLength(450);
    const copy = await run(["copy", "--from", store, "--to", path.join(home.dir, "piped", "copy.json")], opts);
    expect(copy).toMatchObject({ code: 0, stderr: "" });
  });
});
