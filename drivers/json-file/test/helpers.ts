import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

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

export function startChild(script: string, args: string[], env: NodeJS.ProcessEnv = process.env): Child {
  const child = spawn(process.execPath, [script, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
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
