import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { StorageData } from "@taskstore/core";
import { JSONFileStorageDriver } from "../src/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
export const WORKER = path.join(here, "fixtures", "worker.mjs");
export const BASIC_USAGE = path.join(here, "fixtures", "basic-usage.mjs");

/** Child processes run the built package: fail clearly when it is missing or older than the source. */
export function assertBuilt(): void {
  const dist = path.join(here, "..", "dist", "json-file-driver.js");
  const src = path.join(here, "..", "src", "json-file-driver.ts");
  if (!existsSync(dist) || statSync(dist).mtimeMs < statSync(src).mtimeMs) {
    throw new Error("drivers/json-file/dist is missing or stale: run `pnpm --filter @taskstore/driver-json-file build` first");
  }
}

export async function tempDir(prefix = "taskstore-json-"): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A running child: its JSON lines as they arrive, and its end. */
export interface Child {
  process: ChildProcess;
  messages: Record<string, unknown>[];
  /** Resolves with the first message of this type. */
  waitFor(type: string): Promise<Record<string, unknown>>;
  /** Resolves once the child exited and its output was read to the end. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

export interface StartOptions {
  /** A command to run node under, e.g. `["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]`. */
  via?: string[];
  /** In a process group of its own, so `signalGroup()` reaches it and whatever `via` started. */
  detached?: boolean;
}

export function startChild(script: string, args: string[], env: NodeJS.ProcessEnv = process.env, options: StartOptions = {}): Child {
  const [command, ...prefix] = options.via ?? [process.execPath];
  const argv = options.via ? [...prefix, process.execPath, script, ...args] : [script, ...args];
  const child = spawn(command as string, argv, { env, stdio: ["ignore", "pipe", "pipe"], detached: options.detached ?? false });
  const messages: Record<string, unknown>[] = [];
  const waiters: { type: string; resolve(message: Record<string, unknown>): void }[] = [];
  let buffer = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    buffer += chunk;
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (!line.trim()) continue;
      const message = JSON.parse(line) as Record<string, unknown>;
      messages.push(message);
      for (const waiter of waiters.filter((w) => w.type === message.type)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(message);
      }
    }
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
    child.on("close", (code, signal) => resolve({ code, signal, stderr }));
  });
  return {
    process: child,
    messages,
    exited,
    waitFor(type) {
      const seen = messages.find((message) => message.type === type);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ type, resolve });
        exited.then(({ code, signal, stderr }) => reject(new Error(`child exited (${code ?? signal}) before "${type}": ${stderr}`)));
      });
    },
  };
}

/** Runs a child to its end; rejects when it fails. */
export async function runChild(script: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Record<string, unknown>[]> {
  const child = startChild(script, args, env);
  const { code, signal, stderr } = await child.exited;
  if (code !== 0) throw new Error(`child ${path.basename(script)} ${args[0] ?? ""} failed (${code ?? signal}): ${stderr}`);
  return child.messages;
}

/** Names in `dir` matching `pattern`. */
export async function filesMatching(dir: string, pattern: RegExp): Promise<string[]> {
  return (await readdir(dir)).filter((name) => pattern.test(name));
}

/** Sends `signal` to the child's whole process group (it was started with `detached`). */
export function signalGroup(child: Child, signal: NodeJS.Signals): void {
  try {
    process.kill(-(child.process.pid as number), signal);
  } catch (error) {
    if ((error as { code?: string }).code !== "ESRCH") throw error;
  }
}

/** The state letter of a process in /proc/<pid>/stat ("T" when stopped), or undefined when it is gone. */
export function processState(pid: number): string | undefined {
  try {
    const line = readFileSync(`/proc/${pid}/stat`, "utf8");
    return line.slice(line.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}

/** Waits (bounded) until `condition()` holds. */
export async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`gave up after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The store as a fresh driver instance loads it: tasks.json with the journal's records applied. */
export async function loadStoreData(file: string): Promise<StorageData> {
  const driver = new JSONFileStorageDriver({ path: file, compactOnCloseBytes: 0 });
  try {
    return await driver.loadData();
  } finally {
    await driver.close();
  }
}

/** The bytes of tasks.json and of its journal (null when there is none), to check that nothing was written. */
export async function storeFiles(file: string): Promise<{ snapshot: string; journal: string | null }> {
  const { readFile } = await import("node:fs/promises");
  const journal = path.join(path.dirname(file), `${path.basename(file, path.extname(file))}.journal.jsonl`);
  return {
    snapshot: await readFile(file, "utf8"),
    journal: await readFile(journal, "utf8").catch(() => null),
  };
}
