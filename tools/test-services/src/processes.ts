import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";

/** Every server process this module started and has not seen exit: killed when the test process exits. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // "exit" handlers must be synchronous; kill() is. A SIGKILL of this process skips the hook,
  // which is why every server also has a watchdog (below).
  process.on("exit", () => {
    for (const child of running) child.kill("SIGKILL");
  });
}

/** A loopback TCP port that was free a moment ago (the caller binds it next, and retries on EADDRINUSE). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (address === null || typeof address === "string") throw new Error("test-services: no TCP address for a free port");
  return address.port;
}

export interface SpawnedServer {
  readonly child: ChildProcess;
  /** Everything the server printed, for error messages. */
  output(): string;
  /** Resolves once the process has exited. */
  readonly exited: Promise<void>;
}

export interface SpawnOptions {
  command: string;
  args: string[];
  cwd: string;
  /** Printed by the server once it serves requests. */
  ready: RegExp;
  /** Printed when the port was taken, so the caller can pick another one. */
  portTaken?: RegExp;
  timeoutMs?: number;
}

/** Thrown when the chosen port was taken between `freePort()` and the server binding it. */
export class PortTakenError extends Error {}

/**
 * Starts a server process and waits for its ready line. The server gets a watchdog: a tiny shell
 * that holds a pipe from this process and SIGKILLs the server when the pipe closes, so a test
 * process that dies without running its exit hook (SIGKILL, OOM) leaves no server behind.
 */
export async function spawnServer(options: SpawnOptions): Promise<SpawnedServer> {
  installExitHook();
  const child = spawn(options.command, options.args, { cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] });
  let text = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  running.add(child);
  void exited.then(() => running.delete(child));
  if (child.pid !== undefined) watch(child.pid, exited);

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(`test-services: ${options.command} did not print ${options.ready} within ${options.timeoutMs ?? 10_000} ms:\n${text}`),
      );
    }, options.timeoutMs ?? 10_000);
    const onData = (chunk: Buffer) => {
      text += chunk.toString();
      if (options.ready.test(text)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (options.portTaken?.test(text)) reject(new PortTakenError(text));
      else reject(new Error(`test-services: ${options.command} exited (${signal ?? code}) before it was ready:\n${text}`));
    });
  });
  return { child, output: () => text, exited };
}

/** The watchdog: SIGKILLs `pid` when this process's end of the pipe closes (this process died). */
function watch(pid: number, exited: Promise<void>): void {
  const watchdog = spawn("/bin/sh", ["-c", `read _ ; kill -9 ${pid} 2>/dev/null`], { stdio: ["pipe", "ignore", "ignore"] });
  watchdog.on("error", () => undefined);
  watchdog.unref();
  // The pipe must not keep the test process alive: unref the socket under it.
  const pipe = watchdog.stdin as (NodeJS.WritableStream & { unref?: () => void }) | null;
  pipe?.on("error", () => undefined);
  pipe?.unref?.();
  void exited.then(() => watchdog.kill("SIGKILL"));
}

/** Stops a spawned server: SIGTERM (or the given signal), then SIGKILL if it lingers. */
export async function stopServer(server: SpawnedServer, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  server.child.kill(signal);
  const timer = setTimeout(() => server.child.kill("SIGKILL"), 5_000);
  await server.exited;
  clearTimeout(timer);
}
