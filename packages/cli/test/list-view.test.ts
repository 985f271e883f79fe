import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import stringWidth from "string-width";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, inTerminal, json, makeHome, ok, run, shellLine } from "./helpers.js";

const MIN = 60_000;

function task(id: string, title: string, status: string, createdAt: number, extra: Record<string, unknown> = {}) {
  return {
    id,
    title,
    status,
    progress: { percent: status === "completed" ? 100 : 0 },
    metadata: {},
    createdAt,
    updatedAt: createdAt,
    children: [],
    logs: [],
    ...extra,
  };
}

/** Writes a JSON store; children lists are filled in from the parentIds. */
async function writeStore(file: string, tasks: ReturnType<typeof task>[]): Promise<void> {
  for (const one of tasks) {
    const parent = tasks.find((t) => t.id === (one as { parentId?: string }).parentId);
    if (parent) (parent.children as string[]).push(one.id);
  }
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify({ version: "1.0.0", tasks, metadata: { lastUpdated: 1, totalTasks: tasks.length } }));
}

const ESC = "\x1b";

describe("list and show as a person reads them", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  let opts: { env: NodeJS.ProcessEnv };
  let file: string;
  const ts = (...args: string[]) => ["--store", `file:${file}`, ...args];
  const now = Date.now();
  beforeAll(async () => {
    home = await makeHome();
    opts = { env: home.env };
    file = path.join(home.dir, "view", "tasks.json");
    await writeStore(file, [
      task("T0000000000000000000000001", "Release", "running", now - 3 * 24 * 60 * MIN, { updatedAt: now - 5 * MIN }),
      task("T0000000000000000000000002", "build", "completed", now - 3 * 60 * MIN, { parentId: "T0000000000000000000000001" }),
      task("T0000000000000000000000003", "Archive", "cancelled", now - 2 * 60 * MIN, { parentId: "T0000000000000000000000001" }),
      task("T0000000000000000000000004", "deploy", "failed", now - 90 * MIN, { parentId: "T0000000000000000000000001" }),
      task("T0000000000000000000000005", "Changelog", "pending", now - 80 * MIN, {
        parentId: "T0000000000000000000000001",
        updatedAt: now - 1 * MIN,
      }),
      task(
        "T0000000000000000000000006",
        "A very long title that will not fit on a narrow terminal at all, no way",
        "paused",
        now - 70 * MIN,
        {
          progress: { percent: 50, message: "waiting for review", estimatedTimeRemaining: 120_000 },
        },
      ),
      task("T0000000000000000000000007", "Esc \x1b[2J title", "pending", now - 60 * MIN),
    ]);
  });
  afterAll(() => home.cleanup());

  const ids = (text: string) => [...text.matchAll(/T0{20}\d{5}/g)].map((m) => m[0].slice(-1));

  it("finished tasks (completed, cancelled) are hidden unless --all or --status asks; failed ones stay; the footer counts them", async () => {
    const text = await ok(ts("list"), opts);
    expect(ids(text)).toEqual(["1", "4", "5", "6", "7"]);
    expect(text.trimEnd().split("\n").at(-1)).toBe("(2 finished tasks hidden: --all shows them)");
    expect(ids(await ok(ts("list", "--all"), opts))).toEqual(["1", "2", "3", "4", "5", "6", "7"]);
    expect(ids(await ok(ts("list", "--status", "completed"), opts))).toEqual(["2"]);
    const asJson = await json<{ tasks: { id: string }[] }>(ts("list"), opts);
    expect(asJson.tasks.map((t) => t.id.slice(-1))).toEqual(["1", "4", "5", "6", "7"]);
    expect((await json<{ tasks: unknown[] }>(ts("list", "--all"), opts)).tasks).toHaveLength(7);
  });

  it("--parent draws the tasks under one, an ambiguous one is exit 13; --sort orders siblings; --limit draws N and says how many more", async () => {
    expect(ids(await ok(ts("list", "--parent", "T0000000000000000000000001", "--all"), opts))).toEqual(["2", "3", "4", "5"]);
    expect((await run(ts("list", "--parent", "T000"), opts)).code).toBe(13);
    expect((await run(ts("list", "--parent", "NOPE0000000000000000000000"), opts)).code).toBe(3);
    expect(ids(await ok(ts("list", "--all", "--sort", "title"), opts))).toEqual(["6", "7", "1", "3", "2", "5", "4"]);
    expect(ids(await ok(ts("list", "--all", "--sort", "status"), opts))).toEqual(["1", "5", "4", "2", "3", "6", "7"]);
    expect(ids(await ok(ts("list", "--all", "--sort", "updated"), opts))).toEqual(["1", "5", "4", "3", "2", "7", "6"]);
    const limited = await ok(ts("list", "--all", "--limit", "3"), opts);
    expect(ids(limited)).toEqual(["1", "2", "3"]);
    expect(limited).toContain("(4 more not shown: --limit 3)");
    const asJson = await json<{ tasks: { id: string }[] }>(ts("list", "--all", "--sort", "title", "--limit", "2"), opts);
    expect(asJson.tasks.map((t) => t.id.slice(-1))).toEqual(["6", "7"]);
    expect((await run(ts("list", "--sort", "size"), opts)).code).toBe(2);
    expect((await run(ts("list", "--limit", "0"), opts)).code).toBe(2);
  });

  it("each line ends with when the task last changed, relative to now", async () => {
    const lines = (await ok(ts("list", "--all"), opts)).split("\n");
    const line = (n: string) => lines.find((l) => l.includes(`T00000000000000000000000${n.padStart(2, "0")}`)) as string;
    expect(line("1")).toMatch(/ {2}5m ago$/);
    expect(line("5")).toMatch(/ {2}1m ago$/);
    expect(line("2")).toMatch(/ {2}3h ago$/);
    expect(line("6")).toMatch(/ {2}1h ago$/);
  });

  it("colours: none in a pipe; on a real terminal, marks and statuses are coloured; NO_COLOR turns them off, FORCE_COLOR on", async () => {
    const piped = await ok(ts("list"), opts);
    expect(piped).not.toContain(ESC);
    const line = shellLine([process.execPath, BIN, ...ts("list")]);
    const tty = await inTerminal(line, opts.env);
    expect(tty.output).toContain(`${ESC}[36m▶${ESC}[39m T0000000000000000000000001`);
    expect(tty.output).toContain(`${ESC}[31m(failed)${ESC}[39m`);
    expect(tty.output).toContain(`${ESC}[33m(paused)${ESC}[39m`);
    const noColor = await inTerminal(line, { ...opts.env, NO_COLOR: "1" });
    expect(noColor.output).not.toContain(ESC);
    expect(noColor.output).toContain("▶ T0000000000000000000000001");
    const forced = await ok(ts("list"), { env: { ...opts.env, FORCE_COLOR: "1", NO_COLOR: "1" } });
    expect(forced).toContain(`${ESC}[36m(running)${ESC}[39m`);
    expect(await ok(ts("list"), { env: { ...opts.env, FORCE_COLOR: "0" } })).not.toContain(ESC);
  });

  it("control characters in task data stay escaped among the colours: every ESC printed starts one of taskstore's own SGR codes", async () => {
    const forced = await ok(ts("list"), { env: { ...opts.env, FORCE_COLOR: "1" } });
    expect(forced).toContain("Esc \\x1b[2J title");
    expect(
      forced
        .split(ESC)
        .slice(1)
        .every((part) => /^\[\d+m/.test(part)),
    ).toBe(true);
    const shown = await ok(ts("show", "T0000000000000000000000007"), { env: { ...opts.env, FORCE_COLOR: "1" } });
    expect(
      shown
        .split(ESC)
        .slice(1)
        .every((part) => /^\[\d+m/.test(part)),
    ).toBe(true);
  });

  it("ASCII marks, tree lines and bars with --ascii or a locale that is not UTF-8 (LC_ALL before LANG)", async () => {
    const expected = [
      /^> T0+1 {2}Release {2}\(running\) {2}\[\.{20}\] {3}0%/m,
      /^\|- \+ T0+2 {2}build {2}\(completed\)/m,
      /^\|- - T0+3 /m,
      /^\|- x T0+4 /m,
      /^`- o T0+5 /m,
      /^= T0+6 .*\[#{10}\.{10}\] {2}50% ~2m left - waiting for review/m,
    ];
    for (const env of [
      { ...opts.env, LANG: "C" },
      { ...opts.env, LANG: "en_US.UTF-8", LC_ALL: "POSIX" },
      { ...opts.env, LANG: "en_GB.ISO-8859-1" },
    ]) {
      const text = await ok(ts("list", "--all"), { env });
      for (const pattern of expected) expect(text).toMatch(pattern);
      expect(text).toMatch(/^[\x20-\x7e\n]*$/);
    }
    const flag = await ok(ts("list", "--all", "--ascii"), opts);
    for (const pattern of expected) expect(flag).toMatch(pattern);
    const unicode = await ok(ts("list", "--all"), { env: { ...opts.env, LANG: "", LC_ALL: "de_DE.utf8" } });
    expect(unicode).toMatch(/^├─ ✓ T0+2 /m);
  });

  it("lines fit the terminal: titles cut with an ellipsis to COLUMNS or a real terminal's width; a pipe gets them whole", async () => {
    const long = "A very long title that will not fit on a narrow terminal at all, no way";
    expect(await ok(ts("list"), opts)).toContain(long);
    const narrow = await ok(ts("list"), { env: { ...opts.env, COLUMNS: "72" } });
    const cut = narrow.split("\n").find((l) => l.includes("T0000000000000000000000006")) as string;
    expect(cut).toMatch(/ {2}A very lo.*… {2}\(paused\)/);
    expect(stringWidth(cut)).toBeLessThanOrEqual(72);
    for (const l of narrow.trimEnd().split("\n")) expect({ l, width: stringWidth(l) <= 72 }).toEqual({ l, width: true });
    const tty = await inTerminal(shellLine([process.execPath, BIN, ...ts("list")]), { ...opts.env, NO_COLOR: "1" }, { columns: 64 });
    const lines = tty.output.trimEnd().split("\n");
    expect(lines.find((l) => l.includes("T0000000000000000000000006"))).toMatch(/A very lon.*… {2}\(paused\)/);
    for (const l of lines) expect({ l, width: stringWidth(l) <= 64 }).toEqual({ l, width: true });
  });

  it("show names the children by mark and title, and the parent by title; a finished task shows no time-left estimate", async () => {
    const parent = await ok(ts("show", "T0000000000000000000000001"), opts);
    expect(parent).toMatch(/^children {2}✓ T0+2 {2}build\n {10}⊘ T0+3 {2}Archive\n {10}✗ T0+4 {2}deploy\n {10}○ T0+5 {2}Changelog$/m);
    expect(await ok(ts("show", "T0000000000000000000000002"), opts)).toMatch(/^parent {4}T0+1 {2}Release$/m);
    expect(await ok(ts("show", "T0000000000000000000000006"), opts)).toMatch(/^progress .*~2m left/m);
    const file2 = path.join(home.dir, "finished", "tasks.json");
    await writeStore(file2, [
      task("F0000000000000000000000001", "done", "completed", now, { progress: { percent: 100, estimatedTimeRemaining: 60_000 } }),
    ]);
    const done = await ok(["--store", file2, "show", "F0000000000000000000000001"], opts);
    expect(done).toMatch(/^progress {2}\[█{20}\] 100%$/m);
    expect(done).not.toContain("left");
  });
});
