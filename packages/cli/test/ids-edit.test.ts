import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { json, makeHome, run } from "./helpers.js";

const A = "01ABCD00000000000000000001";
const B = "01ABCD00000000000000000002";
const C = "01XYZW00000000000000000003";

function task(id: string, title: string, createdAt: number, extra: Record<string, unknown> = {}) {
  return {
    id,
    title,
    status: "pending",
    progress: { percent: 0 },
    metadata: {},
    createdAt,
    updatedAt: createdAt,
    children: [],
    logs: [],
    ...extra,
  };
}

describe("short id prefixes and edit", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  let opts: { env: NodeJS.ProcessEnv };
  beforeAll(async () => {
    home = await makeHome();
    opts = { env: home.env };
  });
  afterAll(() => home.cleanup());

  /** A store holding A and B (sharing the prefix 01ABCD) and C. */
  async function storeWithThree(name: string): Promise<{ file: string; ts: (...args: string[]) => string[] }> {
    const file = path.join(home.dir, name, "tasks.json");
    await mkdir(path.dirname(file), { recursive: true });
    const tasks = [task(A, "Alpha", 1_700_000_000_001), task(B, "Beta", 1_700_000_000_002), task(C, "Gamma", 1_700_000_000_003)];
    await writeFile(file, JSON.stringify({ version: "1.0.0", tasks, metadata: { lastUpdated: 1, totalTasks: tasks.length } }));
    return { file, ts: (...args: string[]) => ["--store", `file:${file}`, ...args] };
  }

  it("every verb that takes an id takes a unique prefix of at least 4 characters (any case), and prints the whole id", async () => {
    const { ts } = await storeWithThree("prefix");
    expect((await json<{ id: string }>(ts("show", "01XY"), opts)).id).toBe(C);
    expect((await json<{ id: string }>(ts("show", "01xyzw"), opts)).id).toBe(C);
    expect(await json(ts("start", "01XYZ"), opts)).toEqual({ id: C, status: "running" });
    expect(await json(ts("progress", "01XYZ", "10"), opts)).toEqual({ id: C, progress: { percent: 10 } });
    expect(await json(ts("log", "01XYZ", "hello"), opts)).toEqual({ id: C, type: "log", output: "hello" });
    expect((await json<{ id: string; entries: unknown[] }>(ts("log", "01XYZ"), opts)).id).toBe(C);
    expect(await json(ts("assign", "01XYZ", "bob"), opts)).toEqual({ id: C, assignedTo: "bob" });
    expect(await json(ts("link", A, "01XYZ"), opts)).toEqual({ parentId: A, childId: C });
    const { id: kid } = await json<{ id: string }>(ts("add", "kid", "--parent", "01XYZ"), opts);
    expect((await json<{ parentId: string }>(ts("show", kid), opts)).parentId).toBe(C);
    expect(await json(ts("pause", "01XYZ"), opts)).toEqual({ id: C, status: "paused" });
    expect(await json(ts("cancel", "01XYZ"), opts)).toEqual({ id: C, status: "cancelled" });
    expect((await json<{ removed: string[] }>(ts("rm", "01XYZ"), opts)).removed.sort()).toEqual([C, kid].sort());
  });

  it("an ambiguous prefix is exit 13 naming every candidate with its title (--json: the candidates too), and changes nothing", async () => {
    const { file, ts } = await storeWithThree("ambiguous");
    const before = await readFile(file, "utf8");
    for (const args of [
      ["show", "01ABCD"],
      ["start", "01ABCD"],
      ["rm", "01abcd"],
      ["log", "01ABCD", "text"],
    ]) {
      const result = await run(ts(...args), opts);
      expect({ args, code: result.code }).toEqual({ args, code: 13 });
      expect(result.stderr).toBe(`taskstore: the id prefix "${args[1]}" is ambiguous: it starts 2 ids: ${A} (Alpha), ${B} (Beta)\n`);
    }
    const asJson = await run(ts("start", "01ABCD", "--json"), opts);
    expect(JSON.parse(asJson.stderr).error).toMatchObject({ code: "AMBIGUOUS_ID", exitCode: 13, candidates: [A, B] });
    expect(await readFile(file, "utf8")).toBe(before);
  });

  it("fewer than 4 characters, or a prefix of no id, is not found (exit 3)", async () => {
    const { ts } = await storeWithThree("short");
    for (const given of ["01X", "01XQ", "zzzzzz"]) {
      const result = await run(ts("show", given), opts);
      expect({ given, code: result.code }).toEqual({ given, code: 3 });
    }
    expect((await run(ts("start", "01X"), opts)).code).toBe(3);
  });

  it("edit changes title, description, assignee and metadata (set, merged, unset) through update(), by prefix too", async () => {
    const { ts } = await storeWithThree("edit");
    await json(ts("edit", C, "--meta-json", '{"keep":1,"drop":true,"old":"x"}'), opts);
    const edited = await json(
      ts(
        "edit",
        "01XY",
        "--title",
        "Gamma 2",
        "--description",
        "now described",
        "--assignee",
        "eve",
        "--meta",
        "old=y",
        "--meta",
        "new=z",
        "--unset-meta",
        "drop",
      ),
      opts,
    );
    expect(edited).toEqual({ id: C, fields: ["title", "description", "assignedTo", "metadata"] });
    const shown = await json<Record<string, unknown>>(ts("show", C), opts);
    expect(shown).toMatchObject({ title: "Gamma 2", description: "now described", assignedTo: "eve", status: "pending" });
    expect(shown.metadata).toEqual({ keep: 1, old: "y", new: "z" });
    expect((await run(ts("edit", C, "--unset-meta", "keep"), opts)).stdout).toBe(`${C} updated: metadata\n`);
    expect((await json<{ metadata: unknown }>(ts("show", C), opts)).metadata).toEqual({ old: "y", new: "z" });
  });

  it("edit with nothing to change, an empty title, or a key both set and unset is refused (exit 2), changing nothing", async () => {
    const { file, ts } = await storeWithThree("edit-refused");
    const before = await readFile(file, "utf8");
    for (const args of [
      ["edit", C],
      ["edit", C, "--title", ""],
      ["edit", C, "--meta", "k=v", "--unset-meta", "k"],
      ["edit", C, "--meta", "novalue"],
    ]) {
      const result = await run(ts(...args), opts);
      expect({ args, code: result.code }).toEqual({ args, code: 2 });
    }
    expect((await run(ts("edit", "01NOSUCHTASK0000000000000X", "--title", "x"), opts)).code).toBe(3);
    expect(await readFile(file, "utf8")).toBe(before);
  });
});
