import { execFile, spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, closedPort, json, makeHome, ok, run, within } from "./helpers.js";

/** Runs `script` in real bash; resolves with its exit code, stdout and stderr. */
function bash(script: string, env: NodeJS.ProcessEnv, args: string[] = []) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile("bash", ["-c", script, "bash", ...args], { env, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: typeof error?.code === "number" ? error.code : 0, stdout, stderr });
    });
  });
}

/** Starts the binary with its stdout pipe closed by the reader before the command writes anything. */
function withClosedStdout(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [BIN, ...args], { env, cwd: env.HOME, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.destroy(); // the only read end: every write of the command now fails with EPIPE
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return {
    child,
    exited,
    get stderr() {
      return stderr;
    },
  };
}

describe("closed pipes and help", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  let opts: { env: NodeJS.ProcessEnv };
  let store: string;
  beforeAll(async () => {
    home = await makeHome();
    opts = { env: home.env };
    // 3,000 tasks: far more output than a pipe holds, so `head -1` closes it while list still writes.
    store = path.join(home.dir, "many", "tasks.json");
    await mkdir(path.dirname(store), { recursive: true });
    const legacy = path.join(home.dir, "many", "legacy.json");
    const todos = Array.from({ length: 3000 }, (_, i) => ({
      text: `todo ${i} with a title long enough to fill the pipe`,
      completed: false,
    }));
    await writeFile(legacy, JSON.stringify(todos));
    await ok(["--store", store, "migrate", "--from", legacy], opts);
  });
  afterAll(() => home.cleanup());

  it("taskstore list | head -1 prints one line and ends quietly with exit 0 (no EPIPE stack trace)", async () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell script
    const result = await bash('node "$1" --store "$2" list | head -1; echo "exit ${PIPESTATUS[0]}" >&2', opts.env, [BIN, store]);
    expect(result.stdout.split("\n")).toHaveLength(2);
    expect(result.stdout).toMatch(/^○ \S+ {2}todo 0 /);
    expect(result.stderr).toBe("exit 0\n");
  });

  it("list --json, show and help with stdout closed before they write end with exit 0 and nothing on stderr", async () => {
    const { tasks } = await json<{ tasks: { id: string }[] }>(["--store", store, "list"], opts);
    const id = tasks[0]?.id as string;
    for (const args of [["--store", store, "list", "--json"], ["--store", store, "show", id], ["help"]]) {
      const cli = withClosedStdout(args, opts.env);
      const code = await within(cli.exited, 30_000, `taskstore ${args.join(" ")}`);
      expect({ args, code, stderr: cli.stderr }).toEqual({ args, code: 0, stderr: "" });
    }
  });

  it("log --follow whose reader goes away ends with exit 0 instead of following forever", async () => {
    const { id } = await json<{ id: string }>(["--store", store, "add", "followed"], opts);
    await ok(["--store", store, "log", id, "one entry"], opts);
    const cli = withClosedStdout(["--store", store, "log", id, "--follow"], opts.env);
    try {
      expect(await within(cli.exited, 30_000, "log --follow with a closed stdout")).toBe(0);
      expect(cli.stderr).toBe("");
    } finally {
      cli.child.kill("SIGKILL");
    }
  });

  it("taskstore help and help VERB print the help on stdout with exit 0; help of an unknown verb is exit 2", async () => {
    const top = await run(["help"], opts);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/^Usage: taskstore /);
    expect(top.stdout).toMatch(/^ {2}help +this help, or one verb's/m);
    expect(top.stdout).toBe((await run(["--help"], opts)).stdout);
    for (const verb of ["add", "list", "copy"]) {
      const one = await run(["help", verb], opts);
      expect({ verb, code: one.code }).toEqual({ verb, code: 0 });
      expect(one.stdout).toBe((await run([verb, "--help"], opts)).stdout);
      expect(one.stdout).toMatch(new RegExp(`^Usage: taskstore ${verb}`));
    }
    const unknown = await run(["help", "frobnicate"], opts);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^taskstore: unknown verb "frobnicate"; the verbs are: add, .*help/);
  });

  it("an s3: command prints no AWS SDK Node-version warning (the SDK is loaded: the endpoint is a closed port)", async () => {
    const env: NodeJS.ProcessEnv = { ...opts.env, AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test", AWS_REGION: "us-east-1" };
    // CI sets the SDK's own switch for its own processes; a user's shell does not.
    delete env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED;
    const port = await closedPort();
    const result = await run(["--store", `s3://bucket?endpoint=http://127.0.0.1:${port}&forcePathStyle=true`, "list"], { env });
    expect(result.code).toBe(7); // it did reach for the server, through the SDK
    expect(result.stderr).not.toMatch(/NodeVersionSupportWarning|AWS SDK for JavaScript|Warning:/);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
  });
});
