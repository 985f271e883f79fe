import { type ChildProcess, spawn } from "node:child_process";

export interface NodeScriptOptions {
  /** Working folder of the child (default: this process's). */
  cwd?: string;
  /** SIGKILL the child and reject after this long (default: no limit). */
  timeoutMs?: number;
}

/** Runs a script with plain `node`; resolves with its stdout once it exits with code 0, else rejects with its stderr. */
export function runNodeScript(script: string, args: string[], options: NodeScriptOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { cwd: options.cwd });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    child.stderr.on("data", (chunk) => {
      err += chunk;
    });
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill("SIGKILL"), options.timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${script} ${args.join(" ")} exited with ${code ?? signal}: ${err}`));
    });
  });
}

/** Starts a script with plain `node` and calls `onLine` for each line of its stdout; stderr goes to this process's. */
export function startNodeScript(
  script: string,
  args: string[],
  onLine: (line: string) => void,
  options: Omit<NodeScriptOptions, "timeoutMs"> & { stdin?: "pipe" | "ignore" } = {},
): ChildProcess {
  const child = spawn(process.execPath, [script, ...args], { cwd: options.cwd, stdio: [options.stdin ?? "ignore", "pipe", "inherit"] });
  let buffer = "";
  child.stdout?.on("data", (chunk) => {
    buffer += chunk;
    let newline = buffer.indexOf("\n");
    while (newline >= 0) {
      onLine(buffer.slice(0, newline));
      buffer = buffer.slice(newline + 1);
      newline = buffer.indexOf("\n");
    }
  });
  return child;
}

/** Resolves once the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}
