import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { StorageDriver } from "@taskstore/core";

/**
 * How a child process opens the same store: a module it imports and what it passes. Plain Node
 * runs the child, so `module` is built JavaScript (a package name's resolved URL, a dist file),
 * never TypeScript source. Everything here must survive `JSON.stringify`.
 *
 * ```ts
 * child: { module: import.meta.resolve("my-driver"), export: "MyDriver", args: [{ path: file }] }
 * ```
 */
export interface ChildDriver {
  /** Absolute URL or absolute path of an ES module. */
  module: string;
  /**
   * The export that makes a driver (default `"default"`). A class is constructed as
   * `new X(...args)`; a function is called as `X(...args)` and may return a promise.
   */
  export?: string;
  /** JSON arguments, e.g. `[{ path: "/tmp/store/tasks.json" }]`. */
  args?: unknown[];
}

/** Opens a driver as described (in a child process, or in this one). Not initialized. */
export async function openChildDriver(descriptor: ChildDriver): Promise<StorageDriver> {
  const url = descriptor.module.startsWith("/") ? new URL(`file://${descriptor.module}`).href : descriptor.module;
  const exported = (await import(url))[descriptor.export ?? "default"] as unknown;
  if (typeof exported !== "function") {
    throw new Error(`conformance: ${descriptor.module} has no export ${descriptor.export ?? "default"} that makes a driver`);
  }
  const args = descriptor.args ?? [];
  const isClass = /^class[\s{]/.test(Function.prototype.toString.call(exported));
  return isClass
    ? new (exported as new (...a: unknown[]) => StorageDriver)(...args)
    : await (exported as (...a: unknown[]) => Promise<StorageDriver>)(...args);
}

const CHILD = fileURLToPath(new URL("./child.js", import.meta.url));

/** A job for `child.js`; `mode` picks what it does. */
export type ChildJob = { driver: ChildDriver } & Record<string, unknown> & { mode: string };

/** A running child: its JSON lines so far, a way to wait for one, to talk to it and to kill it. */
export interface Child {
  readonly process: ChildProcess;
  /** Every JSON line it printed so far. */
  readonly lines: Record<string, unknown>[];
  /** Resolves with the first line (already printed or still to come) for which `match` is true. */
  waitFor(match: (line: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>>;
  /** Writes one line to its stdin. */
  send(line: string): void;
  /** Resolves with the exit code (or signal) once it has exited. */
  readonly exited: Promise<number | string>;
  /** What it printed on stderr. */
  stderr(): string;
}

/** Every child still running: killed when the test process exits. */
const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Starts `child.js` on a job. The child's stdin is a pipe: when it closes, the child ends. */
export function startChild(job: ChildJob, timeoutMs = 120_000): Child {
  const proc = spawn(process.execPath, [CHILD, JSON.stringify(job)], { stdio: ["pipe", "pipe", "pipe"] });
  running.add(proc);
  const lines: Record<string, unknown>[] = [];
  const waiters: { match: (line: Record<string, unknown>) => boolean; resolve(line: Record<string, unknown>): void }[] = [];
  let buffer = "";
  let err = "";
  proc.stdout.setEncoding("utf8");
  proc.stdout.on("data", (chunk: string) => {
    buffer += chunk;
    for (let newline = buffer.indexOf("\n"); newline >= 0; newline = buffer.indexOf("\n")) {
      const text = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        continue; // a line the driver printed itself
      }
      lines.push(line);
      for (const waiter of waiters.splice(0)) {
        if (waiter.match(line)) waiter.resolve(line);
        else waiters.push(waiter);
      }
    }
  });
  proc.stderr.on("data", (chunk) => {
    err += chunk;
  });
  proc.stdin.on("error", () => undefined); // the child may be gone (killed) when we write
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const exited = new Promise<number | string>((resolve) => {
    proc.on("close", (code, signal) => {
      clearTimeout(timer);
      running.delete(proc);
      resolve(code ?? (signal as string));
    });
  });
  const waitFor = (match: (line: Record<string, unknown>) => boolean, what: string) => {
    const seen = lines.find(match);
    if (seen) return Promise.resolve(seen);
    return Promise.race([
      new Promise<Record<string, unknown>>((resolve) => waiters.push({ match, resolve })),
      exited.then((code) => {
        // Lines may still be in flight when "close" fires: look once more.
        const late = lines.find(match);
        if (late) return late;
        throw new Error(`conformance: the child process (${job.mode}) exited with ${code} before ${what}:\n${err.slice(-4_000)}`);
      }),
    ]);
  };
  return { process: proc, lines, waitFor, send: (line) => proc.stdin.write(`${line}\n`), exited, stderr: () => err };
}

/** Runs a child to its end and returns its last JSON line; rejects when it fails. */
export async function runChild<T>(job: ChildJob, timeoutMs?: number): Promise<T> {
  const child = startChild(job, timeoutMs);
  child.process.stdin?.end();
  const code = await child.exited;
  const last = child.lines.at(-1);
  if (code !== 0 || last === undefined) {
    throw new Error(`conformance: the child process (${job.mode}) exited with ${code}:\n${child.stderr().slice(-4_000)}`);
  }
  if (typeof last.error === "string") throw new Error(`conformance: the child process (${job.mode}) failed: ${last.error}`);
  return last.result as T;
}
