import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, json, makeHome, ok, PACKAGE_DIR, run, start, watchLockAttempts, within } from "./helpers.js";

const HOLD_LOCK = path.join(PACKAGE_DIR, "test", "fixtures", "hold-lock.mjs");

interface Entry {
  type: string;
  output: string;
}
interface Shown {
  id: string;
  title: string;
  status: string;
  logs: Entry[];
}

/** Polls (bounded) until `test` passes on the task as stored: waits for a write another process makes, asserts nothing about time. */
async function until(store: string, id: string, env: NodeJS.ProcessEnv, test: (task: Shown) => boolean, what: string): Promise<Shown> {
  for (let i = 0; i < 400; i++) {
    const task = await json<Shown>(["--store", store, "show", id], { env });
    if (test(task)) return task;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${what}: not seen in the store`);
}

describe("taskstore run and log --stdin", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  let opts: { env: NodeJS.ProcessEnv };
  let store: string;
  const ts = (...args: string[]) => ["--store", store, ...args];
  beforeAll(async () => {
    home = await makeHome();
    opts = { env: home.env };
    store = path.join(home.dir, "run", "tasks.json");
    await mkdir(path.dirname(store), { recursive: true });
  });
  afterAll(() => home.cleanup());

  it("run -- CMD makes a task titled with the command line, records stdout and stderr, passes them through, completes on exit 0", async () => {
    const env = { ...opts.env };
    delete env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED;
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell script
    const script = 'echo out1; echo err1 >&2; echo "out 2"; echo "aws=${AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED-unset}"';
    const result = await run(ts("run", "--", "sh", "-c", script), { env });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe("out1\nout 2\naws=unset\n"); // the command's output, and the user's environment as it was
    expect(result.stderr).toMatch(/^taskstore: task (\S+) started: sh -c 'echo out1;/);
    expect(result.stderr).toContain("err1\n");
    const id = /^taskstore: task (\S+) started/.exec(result.stderr)?.[1] as string;
    const task = await json<Shown>(ts("show", id), opts);
    expect(task.title).toBe(`sh -c '${script}'`);
    expect(task.status).toBe("completed");
    expect(task.logs[0]).toMatchObject({ type: "info", output: `$ sh -c '${script}'` });
    expect(task.logs.filter((e) => e.type === "stdout").map((e) => e.output)).toEqual(["out1", "out 2", "aws=unset"]);
    expect(task.logs.filter((e) => e.type === "stderr").map((e) => e.output)).toEqual(["err1"]);
  });

  it("a failing command fails the task with a note naming the exit code, and taskstore exits with that code", async () => {
    const result = await run(ts("run", "--title", "build", "--json", "--quiet", "--", "sh", "-c", "printf 'partial line'; exit 3"), opts);
    expect(result.code).toBe(3);
    const summary = JSON.parse(result.stdout); // --quiet: the JSON document alone on stdout
    expect(summary).toEqual({ id: expect.any(String), status: "failed", exitCode: 3 });
    const task = await json<Shown>(ts("show", summary.id), opts);
    expect(task).toMatchObject({ title: "build", status: "failed" });
    expect(task.logs.slice(1)).toMatchObject([
      { type: "stdout", output: "partial line" },
      { type: "error", output: "exited with code 3" },
    ]);
    const missing = await run(ts("run", "--", "no-such-command-here"), opts);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toMatch(/failed: the command could not be started: spawn no-such-command-here ENOENT/);
  });

  it("run --task ID records into an existing task, retrying a failed one; a completed task is refused (exit 4) and the command never runs", async () => {
    const { id } = await json<{ id: string }>(ts("add", "nightly"), opts);
    expect((await run(ts("run", "--task", id, "--", "sh", "-c", "exit 1"), opts)).code).toBe(1);
    expect((await json<Shown>(ts("show", id), opts)).status).toBe("failed");
    expect((await run(ts("run", "--task", id, "--", "true"), opts)).code).toBe(0);
    expect((await json<Shown>(ts("show", id), opts)).status).toBe("completed");
    const marker = path.join(home.dir, "ran");
    const refused = await run(ts("run", "--task", id, "--", "touch", marker), opts);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/is completed/);
    await expect(readFile(marker)).rejects.toThrow(/ENOENT/);
    expect((await run(ts("run", "echo", "hi"), opts)).stderr).toMatch(/put the command after --/);
  });

  it("output reaches the log while the command still runs", async () => {
    const { id } = await json<{ id: string }>(ts("add", "long job"), opts);
    const go = path.join(home.dir, "go-live");
    const cli = start(
      ts("run", "--task", id, "--", "sh", "-c", 'echo "first line"; while [ ! -e "$0" ]; do sleep 0.05; done; echo second', go),
      opts,
    );
    try {
      await cli.waitFor(/first line/);
      const live = await until(store, id, opts.env, (t) => t.logs.some((e) => e.output === "first line"), "the first line");
      expect(live.status).toBe("running");
      await writeFile(go, "");
      expect(await within(cli.exited, 30_000, "run")).toBe(0);
      const done = await json<Shown>(ts("show", id), opts);
      expect(done.logs.filter((e) => e.type === "stdout").map((e) => e.output)).toEqual(["first line", "second"]);
    } finally {
      cli.child.kill("SIGKILL");
    }
  });

  for (const [signal, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    it(`${signal} to taskstore during run goes to the command; the task fails "killed by ${signal}", exit ${code}`, async () => {
      const { id } = await json<{ id: string }>(ts("add", `interrupted by ${signal}`), opts);
      const cli = start(ts("run", "--task", id, "--", "sh", "-c", "echo ready; exec sleep 60"), opts);
      try {
        await cli.waitFor(/ready/);
        cli.child.kill(signal); // to taskstore alone, not its process group: only forwarding reaches sleep
        expect(await within(cli.exited, 30_000, `run after ${signal}`)).toBe(code);
        const task = await json<Shown>(ts("show", id), opts);
        expect(task.status).toBe("failed");
        expect(task.logs.at(-1)).toMatchObject({ type: "error", output: `killed by ${signal}` });
        expect(cli.stderr).not.toMatch(/interrupted by/);
      } finally {
        cli.child.kill("SIGKILL");
      }
    });
  }

  it("every SIGINT is passed on (a second one does not end taskstore): a command that traps them decides, and its exit code is kept", async () => {
    const { id } = await json<{ id: string }>(ts("add", "trapper"), opts);
    const script = "n=0; trap 'n=$((n+1)); echo \"INT $n\"; [ $n -ge 2 ] && exit 7' INT; echo ready; while :; do sleep 0.05; done";
    const cli = start(ts("run", "--task", id, "--", "sh", "-c", script), opts);
    try {
      await cli.waitFor(/ready/);
      cli.child.kill("SIGINT");
      await cli.waitFor(/INT 1/);
      cli.child.kill("SIGINT");
      expect(await within(cli.exited, 30_000, "run after two SIGINTs")).toBe(7);
      const task = await json<Shown>(ts("show", id), opts);
      expect(task.status).toBe("failed");
      expect(task.logs.filter((e) => e.type === "stdout").map((e) => e.output)).toEqual(["ready", "INT 1", "INT 2"]);
      expect(task.logs.at(-1)).toMatchObject({ type: "error", output: "exited with code 7" });
    } finally {
      cli.child.kill("SIGKILL");
    }
  });

  it("a chatty command on a slow store: 300 lines wait while the store is locked, then go in a few writes, not one a line", async () => {
    const dir = path.join(home.dir, "slow");
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, "tasks.json");
    const { id } = await json<{ id: string }>(["--store", file, "add", "chatty"], opts);
    const [go, end] = [path.join(dir, "go"), path.join(dir, "end")];
    const script =
      'echo ready; while [ ! -e "$0" ]; do sleep 0.05; done; i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo "line $i"; done; echo printed; while [ ! -e "$1" ]; do sleep 0.05; done';
    const cli = start(["--store", file, "run", "--task", id, "--", "sh", "-c", script, go, end], opts);
    const attempts = watchLockAttempts(dir);
    let holder: ReturnType<typeof start> | undefined;
    try {
      await cli.waitFor(/ready/);
      await until(file, id, opts.env, (t) => t.logs.some((e) => e.output === "ready"), "ready");
      holder = start([HOLD_LOCK, file], { env: opts.env, node: true });
      await holder.waitFor(/locked/);
      await writeFile(go, "");
      await cli.waitFor(/printed/); // every line is out, and waits for the lock
      await attempts.settle();
      const before = attempts.count(cli.child.pid as number);
      holder.child.stdin?.end();
      await holder.exited;
      await writeFile(end, "");
      expect(await within(cli.exited, 30_000, "run")).toBe(0);
      await attempts.settle();
      const writes = attempts.count(cli.child.pid as number) - before;
      expect(writes).toBeLessThan(30);
      const task = await json<Shown>(["--store", file, "show", id], opts);
      const lines = task.logs.filter((e) => e.type === "stdout").map((e) => e.output);
      expect(lines).toEqual(["ready", ...Array.from({ length: 300 }, (_, i) => `line ${i + 1}`), "printed"]);
    } finally {
      attempts.close();
      holder?.child.kill("SIGKILL");
      cli.child.kill("SIGKILL");
    }
  });

  it("log ID --stdin appends one entry a line (CRLF and a last line without a break too), as the lines come", async () => {
    const { id } = await json<{ id: string }>(ts("add", "piped"), opts);
    const piped = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(
        "bash",
        ["-c", 'printf "a\\nb\\r\\n\\nc" | node "$0" --store "$1" log "$2" --stdin --type stdout --json', BIN, store, id],
        { env: opts.env },
        (error, stdout) => resolve({ code: typeof error?.code === "number" ? error.code : 0, stdout }),
      );
    });
    expect(piped.code).toBe(0);
    expect(JSON.parse(piped.stdout)).toEqual({ id, type: "stdout", entries: 4 });
    expect((await json<Shown>(ts("show", id), opts)).logs.map((e) => [e.type, e.output])).toEqual([
      ["stdout", "a"],
      ["stdout", "b"],
      ["stdout", ""],
      ["stdout", "c"],
    ]);

    const live = start(ts("log", id, "--stdin"), opts);
    try {
      live.child.stdin?.write("streamed\n");
      await until(store, id, opts.env, (t) => t.logs.some((e) => e.output === "streamed"), "the streamed line");
      live.child.stdin?.end("last\n");
      expect(await within(live.exited, 30_000, "log --stdin")).toBe(0);
      expect((await json<Shown>(ts("show", id), opts)).logs.slice(-2)).toMatchObject([
        { type: "log", output: "streamed" },
        { type: "log", output: "last" },
      ]);
    } finally {
      live.child.kill("SIGKILL");
    }
    expect((await run(ts("log", "01NOSUCHTASK0000000000000X", "--stdin"), opts)).code).toBe(3);
    await ok(ts("show", id), opts);
  });
});
