import { cp, mkdir, readdir, readFile, realpath, symlink, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closedPort, type DiagnoseReport, json, makeHome, ok, PACKAGE_DIR, run, start } from "./helpers.js";

// Each error a person can act on: one line on stderr, its documented exit code, nothing written.
describe("taskstore errors", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  let opts: { env: NodeJS.ProcessEnv };
  beforeAll(async () => {
    home = await makeHome();
    opts = { env: home.env };
  });
  afterAll(() => home.cleanup());

  const storeIn = async (name: string) => {
    const file = path.join(home.dir, name, "tasks.json");
    await mkdir(path.dirname(file), { recursive: true });
    return file;
  };

  it("an unknown scheme exits 2 naming the supported schemes", async () => {
    const result = await run(["--store", "mongodb://db.local/tasks", "add", "x"], opts);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^taskstore: unknown store scheme "mongodb:".*file: sqlite: redis: rediss: s3: postgres:/);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stdout).toBe("");
  });

  it("a scheme whose driver package is not installed exits 8 naming the package to install", async () => {
    // A real install of the CLI without the optional SQLite driver: a node_modules holding only
    // @taskstore/cli (its built files), core and the JSON file driver.
    const install = path.join(home.dir, "install");
    const scope = path.join(install, "node_modules", "@taskstore");
    await mkdir(path.join(scope, "cli"), { recursive: true });
    await cp(path.join(PACKAGE_DIR, "dist"), path.join(scope, "cli", "dist"), { recursive: true });
    await cp(path.join(PACKAGE_DIR, "package.json"), path.join(scope, "cli", "package.json"));
    await symlink(path.resolve(PACKAGE_DIR, "../core"), path.join(scope, "core"), "dir");
    await symlink(path.resolve(PACKAGE_DIR, "../../drivers/json-file"), path.join(scope, "driver-json-file"), "dir");
    // The CLI's own dependencies, as a real install has them.
    for (const dependency of ["string-width", "cli-progress"]) {
      await symlink(
        await realpath(path.join(PACKAGE_DIR, "node_modules", dependency)),
        path.join(install, "node_modules", dependency),
        "dir",
      );
    }
    const bin = path.join(scope, "cli", "dist", "bin.js");
    const db = path.join(install, "tasks.db");
    const result = await run(["--store", `sqlite:${db}`, "add", "x"], { env: home.env, cwd: install, bin });
    expect(result.code).toBe(8);
    expect(result.stderr).toMatch(/needs @taskstore\/driver-sqlite: install it with `npm install @taskstore\/driver-sqlite`/);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(await readdir(install)).toEqual(["node_modules"]);
    // The same install works with the JSON file store it ships with.
    const file = path.join(install, "t.json");
    const added = await run(["--store", `file:${file}`, "add", "works"], { env: home.env, cwd: install, bin });
    expect(added.code).toBe(0);
  });

  it("an unreachable server exits 7 naming the store, with its password masked", async () => {
    const port = await closedPort();
    const result = await run(["--store", `redis://agent:hunter2@127.0.0.1:${port}/0`, "add", "x"], opts);
    expect(result.code).toBe(7);
    expect(result.stderr).toContain(`redis://agent:***@127.0.0.1:${port}/0 is unavailable`);
    expect(result.stderr).not.toContain("hunter2");
  });

  it("invalid input exits 2 (3 for a missing task, 4 for an illegal transition or a cycle) and writes nothing", async () => {
    const file = await storeIn("invalid");
    const ts = (...args: string[]) => ["--store", `file:${file}`, ...args];
    const { id } = await json<{ id: string }>(ts("add", "kept"), opts);
    const { id: kid } = await json<{ id: string }>(ts("add", "kid", "--parent", id), opts);
    const before = await readFile(file, "utf8");
    const cases: [string[], number, RegExp][] = [
      [ts("add", ""), 2, /title/],
      [ts("add", "x", "--meta-json", "[1]"), 2, /--meta-json must be a JSON object/],
      [ts("add", "x", "--meta", "novalue"), 2, /KEY=VALUE/],
      [ts("progress", id, "150"), 2, /percent must be a number from 0 to 100/],
      [ts("progress", id, "5", "--eta", "soon"), 2, /--eta must be a duration/],
      [ts("show", "../../etc/passwd"), 2, /id: must be 1-128 characters/],
      [ts("add", "x", "--colour", "red"), 2, /unknown option '--colour'.*see taskstore add --help/],
      [ts("list", "--status", "done"), 2, /unknown status "done"/],
      [ts("start"), 2, /missing arguments/],
      [ts("log", id, "x", "--type", "shout"), 2, /type/],
      [ts("start", "01NOSUCHTASK0000000000000A"), 3, /task 01NOSUCHTASK0000000000000A does not exist/],
      [ts("complete", id), 4, /cannot complete task .* it is pending/],
      [ts("link", kid, id), 4, /cycle/],
      [ts("frobnicate"), 2, /unknown verb "frobnicate"/],
    ];
    for (const [args, code, message] of cases) {
      const result = await run(args, opts);
      expect({ args: args.slice(2), code: result.code }).toEqual({ args: args.slice(2), code });
      expect(result.stderr).toMatch(message);
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
      expect(result.stdout).toBe("");
    }
    expect(await readFile(file, "utf8")).toBe(before);
  });

  it("with --json an error is one JSON object on stderr with its code and exit code", async () => {
    const result = await run(["--store", `file:${await storeIn("jsonerr")}`, "show", "missing", "--json"], opts);
    expect(result.code).toBe(3);
    expect(JSON.parse(result.stderr)).toEqual({ error: { code: "NOT_FOUND", exitCode: 3, message: "task missing does not exist" } });
  });

  it("a lock held by another process exits 5 after --lock-timeout, naming the holder, and writes nothing", async () => {
    const file = await storeIn("locked");
    await ok(["--store", `file:${file}`, "add", "before"], opts);
    const before = await readFile(file, "utf8");
    const holder = start([path.join(PACKAGE_DIR, "test", "fixtures", "hold-lock.mjs"), file], { env: home.env, node: true });
    try {
      await holder.waitFor(/locked/);
      const result = await run(["--store", `file:${file}`, "--lock-timeout", "300ms", "add", "blocked"], opts);
      expect(result.code).toBe(5);
      expect(result.stderr).toMatch(new RegExp(`could not acquire .* within 300 ms \\(held by pid ${holder.child.pid} on ${hostname()}`));
      expect(result.stderr).toMatch(/nothing was written/);
      expect(await readFile(file, "utf8")).toBe(before);
      // TASKSTORE_LOCK_TIMEOUT does the same.
      const viaEnv = await run(["--store", `file:${file}`, "start", "x"], { env: { ...home.env, TASKSTORE_LOCK_TIMEOUT: "200" } });
      expect(viaEnv.code).toBe(3);
      const report = await json<{ description: { lockHolder: { pid: number; host: string } } }>(
        ["--store", `file:${file}`, "diagnose"],
        opts,
      );
      expect(report.description.lockHolder).toMatchObject({ pid: holder.child.pid, host: hostname() });
    } finally {
      holder.child.stdin?.end();
      await holder.exited;
    }
    await ok(["--store", `file:${file}`, "add", "after"], opts);
  });

  it("a corrupt store without a backup exits 6 and is left exactly as it was", async () => {
    const file = await storeIn("corrupt");
    await writeFile(file, '{"version":"1.0.0","tasks":[{"id":', { mode: 0o600 });
    for (const args of [["list"], ["add", "x"]]) {
      const result = await run(["--store", `file:${file}`, ...args], opts);
      expect(result.code).toBe(6);
      expect(result.stderr).toMatch(/no usable backup/);
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
    }
    expect(await readFile(file, "utf8")).toBe('{"version":"1.0.0","tasks":[{"id":');
    expect(await readdir(path.dirname(file))).toEqual(["tasks.json"]);
    // diagnose still reports (exit 0), with the reason among the recent errors.
    const report = await json<DiagnoseReport>(["--store", `file:${file}`, "diagnose"], opts);
    expect(report.schemaVersion).toBeUndefined();
    expect(report.metrics.recentErrors).toEqual(expect.arrayContaining([expect.objectContaining({ code: "CORRUPT_DATA" })]));
  });

  it("a corrupt store with a backup is restored, said on stderr, and the broken file kept aside", async () => {
    const file = await storeIn("recover");
    const { id } = await json<{ id: string }>(["--store", `file:${file}`, "add", "saved"], opts);
    await ok(["--store", `file:${file}`, "backup"], opts);
    await writeFile(file, "this is not JSON");
    const result = await run(["--store", `file:${file}`, "list", "--json"], opts);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).tasks.map((t: { id: string }) => t.id)).toEqual([id]);
    expect(result.stderr).toMatch(/could not be read .* restored from .*tasks\.backup\.json; the unreadable store was kept as /);
    const aside = (await readdir(path.dirname(file))).filter((name) => name.includes("corrupt"));
    expect(aside).toHaveLength(1);
    expect(await readFile(path.join(path.dirname(file), aside[0] as string), "utf8")).toBe("this is not JSON");
  });

  it("a store written by a newer major version is read but never written (exit 9)", async () => {
    const file = await storeIn("future");
    const task = {
      id: "t1",
      title: "from the future",
      status: "pending",
      progress: { percent: 0 },
      metadata: {},
      createdAt: 1,
      updatedAt: 1,
      children: [],
      logs: [],
    };
    const text = JSON.stringify({ version: "2.0.0", tasks: [task], metadata: { lastUpdated: 1, totalTasks: 1 } });
    await writeFile(file, text);
    expect((await json<{ tasks: { id: string }[] }>(["--store", `file:${file}`, "list"], opts)).tasks[0]?.id).toBe("t1");
    const result = await run(["--store", `file:${file}`, "start", "t1"], opts);
    expect(result.code).toBe(9);
    expect(result.stderr).toMatch(/schema version 2\.0\.0/);
    expect(await readFile(file, "utf8")).toBe(text);
  });
});
