import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { type StoredTask, TaskRepository } from "@taskstore/core";
import { JSONFileStorageDriver } from "@taskstore/driver-json-file";
import { SQLiteStorageDriver } from "@taskstore/driver-sqlite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, json, makeHome, ok, PACKAGE_DIR, run, start } from "./helpers.js";

async function readAll(repository: TaskRepository): Promise<StoredTask[]> {
  try {
    return await repository.loadAll();
  } finally {
    await repository.close();
  }
}

/** A store with a tree, logs, progress, an assignee and metadata: something worth copying. */
async function seed(store: string, opts: { env: NodeJS.ProcessEnv }): Promise<string[]> {
  const ts = (...args: string[]) => ["--store", store, ...args];
  const { id: root } = await json<{ id: string }>(ts("add", "Root", "--meta-json", '{"ünïcode":"✓","n":[1,2]}'), opts);
  const { id: kid } = await json<{ id: string }>(ts("add", "Kid", "--parent", root, "--assign", "agent-7"), opts);
  const { id: other } = await json<{ id: string }>(ts("add", "Other", "--description", "a description"), opts);
  await ok(ts("start", kid), opts);
  await ok(ts("progress", kid, "30", "--step", "build", "--message", "half way there"), opts);
  await ok(ts("log", kid, "first line", "--type", "stdout", "--source", "sh"), opts);
  await ok(ts("log", kid, "second line", "--type", "stderr"), opts);
  await ok(ts("fail", other, "--error", "boom"), opts);
  return [root, kid, other];
}

describe("copy, migrate and log --follow", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  let opts: { env: NodeJS.ProcessEnv };
  beforeAll(async () => {
    home = await makeHome();
    opts = { env: home.env };
  });
  afterAll(() => home.cleanup());

  it("copy moves every task, log and relation from a JSON file to SQLite, checked through a separate repository", async () => {
    const from = path.join(home.dir, "copy-src.json");
    const to = path.join(home.dir, "copy-dst.db");
    await seed(`file:${from}`, opts);
    const result = await run(["copy", "--from", `file:${from}`, "--to", `sqlite:${to}`, "--json"], opts);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe(""); // no progress bar: stderr is not a terminal
    const summary = JSON.parse(result.stdout);
    expect(summary).toEqual({ from: `file:${from}`, to: `sqlite:${to}`, tasks: 3, logEntries: 3, mode: "new" });

    const source = await readAll(new TaskRepository({ driver: new JSONFileStorageDriver(from) }));
    const target = await readAll(new TaskRepository({ driver: new SQLiteStorageDriver({ path: to }) }));
    expect(target).toEqual(source);
    expect(target.find((t) => t.title === "Root")?.children).toHaveLength(1);
  });

  it("copy draws its progress bar on stderr when stderr is a terminal", async () => {
    // util-linux `script` gives the command a pseudo-terminal.
    const from = path.join(home.dir, "tty-src.json");
    await ok(["--store", `file:${from}`, "add", "one"], opts);
    const command = [process.execPath, BIN, "copy", "--from", `file:${from}`, "--to", `file:${path.join(home.dir, "tty-dst.json")}`].join(
      " ",
    );
    const result = await new Promise<string>((resolve, reject) =>
      execFile("script", ["-qec", command, "/dev/null"], { env: home.env }, (error, stdout) => (error ? reject(error) : resolve(stdout))),
    );
    expect(result).toMatch(/copy \[█+\] 100% \| 1\/1 tasks \| \d+ tasks\/s \| ETA /);
    expect(result).toContain("copied 1 tasks");
  });

  it("copy refuses a non-empty target (exit 12, target untouched) unless --merge or --force", async () => {
    const a = path.join(home.dir, "copy-a.json");
    const b = path.join(home.dir, "copy-b.json");
    const [aRoot] = await seed(`file:${a}`, opts);
    const { id: onlyInB } = await json<{ id: string }>(["--store", `file:${b}`, "add", "only in b"], opts);
    const before = await readFile(b, "utf8");
    const refused = await run(["copy", "--from", `file:${a}`, "--to", `file:${b}`], opts);
    expect(refused.code).toBe(12);
    expect(refused.stderr).toMatch(/already holds 1 tasks: use --force to replace them or --merge to add to them/);
    expect(await readFile(b, "utf8")).toBe(before);

    expect((await json<{ mode: string }>(["copy", "--from", `file:${a}`, "--to", `file:${b}`, "--merge"], opts)).mode).toBe("merge");
    const merged = await readAll(new TaskRepository({ driver: new JSONFileStorageDriver(b) }));
    expect(merged.map((t) => t.id).sort()).toEqual(
      [onlyInB, ...(await readAll(new TaskRepository({ driver: new JSONFileStorageDriver(a) }))).map((t) => t.id)].sort(),
    );

    await ok(["copy", "--from", `file:${a}`, "--to", `file:${b}`, "--force"], opts);
    const replaced = await readAll(new TaskRepository({ driver: new JSONFileStorageDriver(b) }));
    expect(replaced).toEqual(await readAll(new TaskRepository({ driver: new JSONFileStorageDriver(a) })));
    expect(replaced.map((t) => t.id)).toContain(aRoot);
  });

  it("migrate converts a legacy todo store in place and keeps the original", async () => {
    const file = path.join(home.dir, "legacy", "tasks.json");
    const legacy = JSON.stringify([
      { text: "write the docs", completed: true },
      { text: "ship it", completed: false },
    ]);
    await ok(["--store", `file:${file}`, "migrate"], opts); // an empty store: nothing to do
    await writeFile(file, legacy);
    expect(await json(["--store", `file:${file}`, "migrate"], opts)).toEqual({ migrated: 2 });
    const { tasks } = await json<{ tasks: { title: string; status: string; progress: { percent: number } }[] }>(
      ["--store", `file:${file}`, "list", "--all"],
      opts,
    );
    expect(tasks.map((t) => [t.title, t.status, t.progress.percent])).toEqual([
      ["write the docs", "completed", 100],
      ["ship it", "pending", 0],
    ]);
    expect(await readFile(path.join(path.dirname(file), "tasks.legacy.json"), "utf8")).toBe(legacy);
    expect(await json(["--store", `file:${file}`, "migrate"], opts)).toEqual({ migrated: 0 });
  });

  it("migrate --from imports a legacy file into any store and leaves the file as it was", async () => {
    const legacyFile = path.join(home.dir, "old-todos.json");
    const legacy = JSON.stringify([
      { text: "one", completed: false },
      { text: "two", completed: true },
      { text: "three", completed: false },
    ]);
    await writeFile(legacyFile, legacy);
    const db = path.join(home.dir, "imported.db");
    await ok(["--store", `sqlite:${db}`, "add", "already here"], opts);
    expect(await json(["--store", `sqlite:${db}`, "migrate", "--from", legacyFile], opts)).toEqual({ migrated: 3, from: legacyFile });
    const tasks = await readAll(new TaskRepository({ driver: new SQLiteStorageDriver({ path: db }) }));
    expect(tasks.map((t) => t.title)).toEqual(["already here", "one", "two", "three"]);
    expect(await readFile(legacyFile, "utf8")).toBe(legacy);
    await writeFile(path.join(home.dir, "not-legacy.json"), '{"version":"1.0.0"}');
    const refused = await run(["--store", `sqlite:${db}`, "migrate", "--from", path.join(home.dir, "not-legacy.json")], opts);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/is not a legacy todo file/);
  });

  it("log --follow prints the log, then an entry appended by another process, and exits 0 on SIGINT", async () => {
    const file = path.join(home.dir, "follow.json");
    const { id } = await json<{ id: string }>(["--store", `file:${file}`, "add", "followed"], opts);
    await ok(["--store", `file:${file}`, "log", id, "already there"], opts);
    const follower = start(["--store", `file:${file}`, "log", id, "--follow", "--interval", "100ms", "--json"], opts);
    try {
      await follower.waitFor(/already there/);
      const writer = start([path.join(PACKAGE_DIR, "test", "fixtures", "append-log.mjs"), file, id, "from elsewhere"], {
        env: home.env,
        node: true,
      });
      expect(await writer.exited).toBe(0);
      await follower.waitFor(/from elsewhere/);
    } finally {
      follower.child.kill("SIGINT");
    }
    expect(await follower.exited).toBe(0);
    const lines = follower.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(lines.map((entry) => [entry.output, entry.type])).toEqual([
      ["already there", "log"],
      ["from elsewhere", "stdout"],
    ]);
    expect(lines[1].source).toBe("other-process");
  });
});
