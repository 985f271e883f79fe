import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DiagnoseReport, json, makeHome, ok, PACKAGE_DIR, run } from "./helpers.js";

// Every verb against the default driver, run as the built binary, reading --json output back.
describe("taskstore against the JSON file store", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  let store: string;
  let opts: { env: NodeJS.ProcessEnv };
  const ts = (...args: string[]) => ["--store", `file:${store}`, ...args];

  beforeAll(async () => {
    home = await makeHome();
    store = path.join(home.dir, "work", "tasks.json");
    opts = { env: home.env };
  });
  afterAll(() => home.cleanup());

  it("add prints the new id (plain and --json) and stores title, description, parent, assignee and metadata", async () => {
    const parent = (await ok(ts("add", "Release 1.0"), opts)).trim();
    expect(parent).toMatch(/^[0-9A-Z]{26}$/);
    const { id } = await json<{ id: string }>(
      ts(
        "add",
        "Build",
        "--description",
        "compile everything",
        "--parent",
        parent,
        "--assign",
        "builder",
        "--meta",
        "branch=main",
        "--meta-json",
        '{"attempt":2,"tags":["ci"]}',
      ),
      opts,
    );
    const task = await json<Record<string, unknown>>(ts("show", id), opts);
    expect(task).toMatchObject({
      id,
      title: "Build",
      description: "compile everything",
      parentId: parent,
      assignedTo: "builder",
      status: "pending",
      metadata: { attempt: 2, tags: ["ci"], branch: "main" },
      logs: [],
    });
    const parentTask = await json<{ children: string[] }>(ts("show", parent), opts);
    expect(parentTask.children).toEqual([id]);
  });

  it("the store file is where --store says, with mode 0600", async () => {
    expect((await stat(store)).mode & 0o777).toBe(0o600);
    const data = JSON.parse(await readFile(store, "utf8"));
    expect(data.version).toBe("1.0.0");
    expect(data.tasks).toHaveLength(2);
  });

  it("the status verbs walk the state machine and print { id, status }", async () => {
    const { id } = await json<{ id: string }>(ts("add", "Lifecycle"), opts);
    expect(await json(ts("start", id), opts)).toEqual({ id, status: "running" });
    expect(await json(ts("pause", id), opts)).toEqual({ id, status: "paused" });
    expect(await json(ts("resume", id), opts)).toEqual({ id, status: "running" });
    expect(await json(ts("complete", id), opts)).toEqual({ id, status: "completed" });
    expect((await json<{ progress: { percent: number } }>(ts("show", id), opts)).progress.percent).toBe(100);

    const { id: other } = await json<{ id: string }>(ts("add", "Doomed"), opts);
    expect(await json(ts("fail", other, "--error", "disk full"), opts)).toEqual({ id: other, status: "failed" });
    expect(await json(ts("retry", other), opts)).toEqual({ id: other, status: "pending" });
    expect(await json(ts("cancel", other, "--reason", "not needed"), opts)).toEqual({ id: other, status: "cancelled" });
    const shown = await json<{ logs: { type: string; output: string }[] }>(ts("show", other), opts);
    expect(shown.logs.map((entry) => [entry.type, entry.output])).toEqual([
      ["error", "disk full"],
      ["info", "not needed"],
    ]);
  });

  it("progress stores percent, step, total, eta and message", async () => {
    const { id } = await json<{ id: string }>(ts("add", "Long job"), opts);
    await ok(ts("start", id), opts);
    const printed = await json(ts("progress", id, "42.5", "--step", "3", "--total", "8", "--eta", "90s", "--message", "linking"), opts);
    const expected = { percent: 42.5, currentStep: 3, totalSteps: 8, estimatedTimeRemaining: 90_000, message: "linking" };
    expect(printed).toEqual({ id, progress: expected });
    expect((await json<{ progress: unknown }>(ts("show", id), opts)).progress).toEqual(expected);
  });

  it("log appends entries with type and source, and prints them back", async () => {
    const { id } = await json<{ id: string }>(ts("add", "Logged"), opts);
    expect(await json(ts("log", id, "line one", "--type", "stdout", "--source", "make"), opts)).toEqual({
      id,
      type: "stdout",
      output: "line one",
      source: "make",
    });
    await ok(ts("log", id, "line two"), opts);
    const printed = await json<{ entries: { output: string; type: string; source?: string }[]; droppedLogCount: number }>(
      ts("log", id),
      opts,
    );
    expect(printed.entries.map((e) => [e.type, e.output, e.source])).toEqual([
      ["stdout", "line one", "make"],
      ["log", "line two", undefined],
    ]);
    expect(printed.droppedLogCount).toBe(0);
    expect((await json<{ entries: unknown[] }>(ts("log", id, "--lines", "1"), opts)).entries).toHaveLength(1);
    const text = await ok(ts("show", id), opts);
    expect(text).toMatch(/log: 2 entries/);
    expect(text).toMatch(/\[stdout\] make: line one/);
  });

  it("link moves a task under a parent; assign sets and clears the agent", async () => {
    const { id: a } = await json<{ id: string }>(ts("add", "A"), opts);
    const { id: b } = await json<{ id: string }>(ts("add", "B"), opts);
    expect(await json(ts("link", a, b), opts)).toEqual({ parentId: a, childId: b });
    expect((await json<{ parentId: string }>(ts("show", b), opts)).parentId).toBe(a);
    expect(await json(ts("assign", b, "reviewer"), opts)).toEqual({ id: b, assignedTo: "reviewer" });
    expect((await json<{ assignedTo?: string }>(ts("show", b), opts)).assignedTo).toBe("reviewer");
    expect(await json(ts("assign", b, "--none"), opts)).toEqual({ id: b, assignedTo: null });
    expect((await json<Record<string, unknown>>(ts("show", b), opts)).assignedTo).toBeUndefined();
  });

  it("list draws the tree with status marks and a progress bar per running task; --json lists summaries", async () => {
    const { id: root } = await json<{ id: string }>(ts("add", "Tree root"), opts);
    const { id: kid } = await json<{ id: string }>(ts("add", "Tree kid", "--parent", root), opts);
    await ok(ts("start", kid), opts);
    await ok(ts("progress", kid, "50"), opts);
    const text = await ok(ts("list"), opts);
    const lines = text.split("\n");
    const rootLine = lines.findIndex((line) => line.includes(root));
    expect(lines[rootLine]).toMatch(/^○ .* Tree root {2}\(pending\)/);
    expect(lines[rootLine + 1]).toMatch(/^└─ ▶ .*Tree kid {2}\(running\) .*\[█{10}░{10}\] {2}50%/);

    const { tasks } = await json<{ tasks: Record<string, unknown>[] }>(ts("list"), opts);
    const listed = tasks.find((task) => task.id === kid);
    expect(listed).toMatchObject({ id: kid, parentId: root, status: "running", logCount: 0 });
    expect(listed).not.toHaveProperty("logs");

    const running = await json<{ tasks: { status: string }[] }>(ts("list", "--status", "running"), opts);
    expect(running.tasks.length).toBeGreaterThan(0);
    expect(running.tasks.every((task) => task.status === "running")).toBe(true);
  });

  it("rm deletes a task with its descendants and prints every id removed", async () => {
    const { id: top } = await json<{ id: string }>(ts("add", "Doomed tree"), opts);
    const { id: mid } = await json<{ id: string }>(ts("add", "mid", "--parent", top), opts);
    const { id: leaf } = await json<{ id: string }>(ts("add", "leaf", "--parent", mid), opts);
    const { removed } = await json<{ removed: string[] }>(ts("rm", top), opts);
    expect(removed.sort()).toEqual([top, mid, leaf].sort());
    const after = await run(ts("show", leaf), opts);
    expect(after.code).toBe(3);
  });

  it("backup writes tasks.backup.json, restore brings it back and keeps the replaced store aside", async () => {
    const backup = await json<{ location: string; backedUpAt: number }>(ts("backup"), opts);
    expect(backup.location).toBe(path.join(path.dirname(store), "tasks.backup.json"));
    const before = await json<{ tasks: { id: string }[] }>(ts("list"), opts);
    const { id: late } = await json<{ id: string }>(ts("add", "after the backup"), opts);
    const restored = await json<{ restoredFrom: string; movedTo?: string }>(ts("restore"), opts);
    expect(restored.restoredFrom).toBe(backup.location);
    expect(restored.movedTo).toBeDefined();
    const kept = JSON.parse(await readFile(restored.movedTo as string, "utf8"));
    expect(kept.tasks.map((t: { id: string }) => t.id)).toContain(late);
    const after = await json<{ tasks: { id: string }[] }>(ts("list"), opts);
    expect(after.tasks.map((t) => t.id)).toEqual(before.tasks.map((t) => t.id));
  });

  it("diagnose --persistence reports driver, capabilities, location, size, backup, version, lock and count", async () => {
    const report = await json<DiagnoseReport>(ts("diagnose", "--persistence"), opts);
    const { tasks } = await json<{ tasks: unknown[] }>(ts("list", "--all"), opts);
    expect(report.store).toBe(`file:${store}`);
    expect(report.driver).toBe("json-file");
    expect(report.capabilities).toMatchObject({ locking: true, backup: true, restore: true, persistent: true });
    expect(report.description.location).toBe(store);
    expect(report.description.sizeBytes).toBe((await stat(store)).size);
    expect(report.description.lastBackupAt).toEqual(expect.any(Number));
    expect(report.description.lockHolder).toBeNull();
    expect(report.schemaVersion).toBe("1.0.0");
    expect(report.taskCount).toBe(tasks.length);
    expect(report.metrics.recentErrors).toEqual([]);
    const text = await ok(ts("diagnose", "--persistence"), opts);
    for (const label of ["driver", "capabilities", "location", "size", "last backup", "schema version", "tasks", "lock", "recent errors"]) {
      expect(text).toMatch(new RegExp(`^${label} `, "m"));
    }
  });

  it("TASKSTORE_URL chooses the store when --store is absent, and no store means the default path", async () => {
    const other = path.join(home.dir, "env-store.json");
    await ok(["add", "via env"], { env: { ...home.env, TASKSTORE_URL: `file:${other}` } });
    expect(JSON.parse(await readFile(other, "utf8")).tasks[0].title).toBe("via env");
    await ok(["add", "default"], opts);
    const defaultFile = path.join(home.dir, "config", "kilocode", "tasks.json");
    expect(JSON.parse(await readFile(defaultFile, "utf8")).tasks[0].title).toBe("default");
  });

  it("--help works at the top and on every verb", async () => {
    const top = await ok(["--help"], opts);
    const verbs = [...top.matchAll(/^ {2}([a-z]+) {2,}/gm)].map((m) => m[1] as string);
    expect(verbs).toEqual(expect.arrayContaining(["add", "list", "show", "log", "copy", "diagnose", "migrate"]));
    expect(verbs).toHaveLength(26);
    expect(verbs).toContain("reseal");
    expect(verbs).toContain("backups");
    // One child process per verb would cost seconds; two go through the binary, all through the built main().
    expect(await ok(["log", "--help"], opts)).toMatch(/^Usage: taskstore log <id>/);
    expect(await ok(["copy", "-h"], opts)).toMatch(/--force/);
    const { main } = (await import(pathToFileURL(path.join(PACKAGE_DIR, "dist", "cli.js")).href)) as typeof import("../src/cli.js");
    for (const verb of verbs) {
      let text = "";
      const write = (chunk: string) => {
        text += chunk;
        return true;
      };
      const stdout = { write } as unknown as NodeJS.WriteStream;
      const code = await main([verb, "--help"], { stdout, stderr: stdout, env: {}, interrupted: new Promise(() => undefined) });
      expect(code).toBe(0);
      expect(text).toMatch(new RegExp(`^Usage: taskstore ${verb}`));
      expect(text).toMatch(/--store URL/);
    }
  });
});
