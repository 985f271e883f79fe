import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, watch } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const PACKAGE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const BIN = path.join(PACKAGE_DIR, "dist", "bin.js");

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A temp folder that is HOME and XDG_CONFIG_HOME for the binary, so no test touches the real default store. */
export async function makeHome(): Promise<{ dir: string; env: NodeJS.ProcessEnv; cleanup(): Promise<void> }> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build the CLI first (pnpm --filter @taskstore/cli build)`);
  const dir = await mkdtemp(path.join(tmpdir(), "taskstore-cli-"));
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: dir, XDG_CONFIG_HOME: path.join(dir, "config") };
  delete env.TASKSTORE_URL;
  delete env.TASKSTORE_LOCK_TIMEOUT;
  // pnpm's bin wrappers set NODE_PATH to the whole workspace's packages; a user's shell has none.
  delete env.NODE_PATH;
  // The terminal's look comes from these; a test that wants one sets it.
  for (const name of ["FORCE_COLOR", "NO_COLOR", "COLUMNS", "LC_ALL", "LC_CTYPE", "TERM"]) delete env[name];
  env.LANG = "C.UTF-8";
  return { dir, env, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Runs the built `taskstore` binary as a child process. */
export function run(args: string[], options: { env: NodeJS.ProcessEnv; cwd?: string; bin?: string }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [options.bin ?? BIN, ...args],
      { env: options.env, cwd: options.cwd ?? options.env.HOME, timeout: 30_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== "number") {
          reject(error);
          return;
        }
        resolve({ code: typeof error?.code === "number" ? error.code : 0, stdout, stderr });
      },
    );
  });
}

/** Runs and expects exit 0; returns stdout. */
export async function ok(args: string[], options: { env: NodeJS.ProcessEnv; cwd?: string }): Promise<string> {
  const result = await run(args, options);
  if (result.code !== 0) throw new Error(`taskstore ${args.join(" ")} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

/** Runs with --json and parses stdout. */
export async function json<T = Record<string, unknown>>(args: string[], options: { env: NodeJS.ProcessEnv; cwd?: string }): Promise<T> {
  return JSON.parse(await ok([...args, "--json"], options)) as T;
}

/** A loopback port nothing listens on (it was free a moment ago). */
export function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Spawns a long-running process and collects its output; `waitFor` resolves when stdout matches. */
export function start(args: string[], options: { env: NodeJS.ProcessEnv; node?: boolean }) {
  const child: ChildProcess = spawn(process.execPath, options.node ? args : [BIN, ...args], {
    env: options.env,
    cwd: options.env.HOME,
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  const waiters: { pattern: RegExp; resolve(): void }[] = [];
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    for (const waiter of [...waiters]) {
      if (waiter.pattern.test(stdout)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    child,
    exited,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    waitFor(pattern: RegExp, ms = 20_000): Promise<void> {
      if (pattern.test(stdout)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no ${pattern} in stdout after ${ms} ms; stdout: ${stdout}; stderr: ${stderr}`)),
          ms,
        );
        waiters.push({
          pattern,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
  };
}

/** What `diagnose --json` prints (the fields the tests read). */
export interface DiagnoseReport {
  store: string;
  driver: string;
  capabilities: Record<string, boolean>;
  description: { location?: string; sizeBytes?: number; lastBackupAt?: number; lockHolder?: unknown; [key: string]: unknown };
  schemaVersion?: string;
  taskCount?: number;
  metrics: { recentErrors: unknown[]; pendingChanges: number };
}

/**
 * Watches a JSON file store's folder for lock attempts. Each attempt of the JSON file driver to
 * take the lock builds a folder `.<stem>.lock.<pid>-<id>.new` (renamed into place when the lock is
 * free, removed when it is not), so the folders named with a process's pid count that process's
 * attempts, seen from outside it.
 */
export function watchLockAttempts(dir: string, stem = "tasks") {
  const pattern = new RegExp(`^\\.${stem}\\.lock\\.(\\d+)-([0-9a-f]+)\\.new$`);
  const attempts = new Map<number, Set<string>>();
  const waiters: { test(): boolean; resolve(): void }[] = [];
  const wake = () => {
    for (const waiter of [...waiters]) {
      if (waiter.test()) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  };
  const watcher = watch(dir, (_event, name) => {
    if (typeof name !== "string") return;
    const match = pattern.exec(name);
    if (match) {
      const pid = Number(match[1]);
      const seen = attempts.get(pid) ?? new Set<string>();
      seen.add(match[2] as string);
      attempts.set(pid, seen);
    }
    wake();
  });
  const until = (test: () => boolean, what: string, ms: number) =>
    new Promise<void>((resolve, reject) => {
      if (test()) {
        resolve();
        return;
      }
      const timer = setTimeout(() => reject(new Error(`${what} not seen after ${ms} ms`)), ms);
      waiters.push({
        test,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  return {
    /** How many lock attempts `pid` made so far. */
    count: (pid: number) => attempts.get(pid)?.size ?? 0,
    /** Resolves once `pid` has tried to take the lock (it is then waiting for it). */
    waitForAttempt: (pid: number, ms = 20_000) => until(() => (attempts.get(pid)?.size ?? 0) > 0, `a lock attempt by pid ${pid}`, ms),
    /** Resolves once every change made in the folder so far has been reported (a marker file's event comes after them). */
    async settle(ms = 20_000): Promise<void> {
      const marker = `marker-${Math.random().toString(16).slice(2)}`;
      let seen = false;
      const off = watch(dir, (_event, name) => {
        if (name === marker) seen = true;
      });
      await writeFile(path.join(dir, marker), "");
      try {
        await until(() => seen, `the marker ${marker}`, ms);
      } finally {
        off.close();
        await rm(path.join(dir, marker), { force: true });
      }
    },
    close: () => watcher.close(),
  };
}

/** Resolves with `promise`, or rejects once `ms` have passed: bounds a wait for a process to end (not a timing assertion). */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: still running after ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** `args` as one shell command line (each argument single-quoted). */
export function shellLine(args: string[]): string {
  return args.map((arg) => `'${arg.replace(/'/g, "'\\''")}'`).join(" ");
}

/**
 * Runs a shell command line in a real pseudo-terminal (util-linux `script`): stdin, stdout and
 * stderr are the terminal, which is `columns` wide. Resolves with what the terminal showed (line
 * ends as `\n`) and the exit code.
 */
export function inTerminal(line: string, env: NodeJS.ProcessEnv, options: { columns?: number; input?: string } = {}) {
  const sized = options.columns === undefined ? line : `stty cols ${options.columns}; ${line}`;
  return new Promise<{ code: number; output: string }>((resolve, reject) => {
    const child = execFile("script", ["-qec", sized, "/dev/null"], { env, cwd: env.HOME, timeout: 60_000 }, (error, stdout) => {
      if (error && typeof error.code !== "number") {
        reject(error);
        return;
      }
      resolve({ code: typeof error?.code === "number" ? error.code : 0, output: stdout.replace(/\r\n/g, "\n") });
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
    else child.stdin?.end();
  });
}
