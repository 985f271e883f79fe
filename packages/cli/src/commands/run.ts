import { spawn } from "node:child_process";
import { constants } from "node:os";
import { LIMITS, type TaskManager, TaskStoreError } from "@taskstore/core";
import { type Command, type Context, notice, output, stringArg, withManager } from "../command.js";
import { resolveId } from "../id-prefix.js";
import { LineSplitter, LogRecorder } from "../line-log.js";
import { UsageError } from "../usage-error.js";

/** How the command ended. */
type Ending = { code: number; signal?: undefined } | { code?: undefined; signal: NodeJS.Signals } | { spawnError: Error };

export const run: Command = {
  name: "run",
  summary: "run a command as a task: its output goes to the log, its exit code decides the status",
  usage: "run [--title TEXT | --task ID] [--parent ID] [--assign AGENT] [--quiet] -- <command> [arguments]",
  details: `Creates a task (its title the command line, or --title), or takes --task ID, starts it and runs
the command. Its stdout and stderr go to the terminal as usual and, line by line, into the task's
log as "stdout" and "stderr" entries while it runs. Exit 0 completes the task; anything else fails
it, with a note naming the exit code or the signal. SIGINT and SIGTERM are passed to the command.
taskstore exits with the command's exit code (128 + N for a command killed by signal N; 127 when
it cannot be started).
--task takes a pending task (started), a paused one (resumed), a running one, or a failed or
cancelled one (retried, then started); a completed task is refused (exit 4).
--json prints { "id", "status", "exitCode", "signal"? } on stdout after the command's own output
(with --quiet it is the only thing there).
Example: taskstore run -- npm test`,
  options: {
    title: { type: "string", value: "TEXT", description: "the new task's title (default: the command line)" },
    task: { type: "string", value: "ID", description: "record the run in this existing task", complete: "id" },
    parent: { type: "string", short: "p", value: "ID", description: "make the new task a child of this one", complete: "id" },
    assign: { type: "string", short: "a", value: "AGENT", description: "assign the new task to an agent" },
    quiet: { type: "boolean", short: "q", description: "record the output without passing it to the terminal" },
  },
  positionals: { min: 0, max: 0 },
  takesCommand: true,
  async run(ctx, args) {
    const command = args.command ?? [];
    if (command.length === 0) throw new UsageError("run needs a command after --: taskstore run -- make test", "run");
    const taskId = stringArg(args, "task");
    const title = stringArg(args, "title");
    const parentId = stringArg(args, "parent");
    const assignedTo = stringArg(args, "assign");
    if (taskId !== undefined && (title !== undefined || parentId !== undefined || assignedTo !== undefined)) {
      throw new UsageError("--task records into an existing task: --title, --parent and --assign are for a new one", "run");
    }
    const line = commandLine(command);
    return withManager(ctx, async (manager) => {
      const id =
        taskId === undefined
          ? await manager.create({
              title: clip(title ?? line, LIMITS.titleLength),
              ...(parentId !== undefined ? { parentId: resolveId(manager, parentId) } : {}),
              ...(assignedTo !== undefined ? { assignedTo } : {}),
            })
          : resolveId(manager, taskId);
      await begin(manager, id);
      await manager.appendOutput(id, clip(`$ ${line}`, LIMITS.logOutputLength), "info");
      notice(ctx, "run", `task ${id} started: ${line}`, { id, command });
      const recorder = new LogRecorder(manager, id);
      const ending = await runChild(ctx, command, recorder, args.values.quiet === true);
      try {
        await recorder.drain();
      } catch (error) {
        notice(ctx, "unrecorded", `some of the output could not be written to the log: ${(error as Error).message}`, {}, "warning");
      }
      if (recorder.dropped > 0) {
        await manager.appendOutput(id, `${recorder.dropped} lines of output were dropped (more than the log keeps)`, "info");
      }
      const { exitCode, note } = outcome(ending);
      if (exitCode === 0) await manager.complete(id);
      else await manager.fail(id, note);
      const status = manager.findById(id)?.status;
      if (!ctx.json && exitCode !== 0) notice(ctx, "run", `task ${id} failed: ${note}`, { id, exitCode });
      output(ctx, "", {
        id,
        status,
        exitCode,
        ...("signal" in ending && ending.signal ? { signal: ending.signal } : {}),
      });
      return exitCode;
    });
  },
};

/** Brings the task to running: started, resumed, or retried and started; a completed one is refused. */
async function begin(manager: TaskManager, id: string): Promise<void> {
  const status = manager.findById(id)?.status;
  if (status === "running") return;
  if (status === "paused") return manager.resume(id);
  if (status === "failed" || status === "cancelled") await manager.retry(id);
  else if (status === "completed") {
    throw new TaskStoreError("INVALID_TRANSITION", `task ${id} is completed: a completed task cannot be run again (run without --task)`);
  }
  await manager.start(id);
}

/** Runs the command, its output passed through and recorded; resolves when it has ended and its output is read. */
function runChild(ctx: Context, command: string[], recorder: LogRecorder, quiet: boolean): Promise<Ending> {
  return new Promise((resolve) => {
    // Taken before the child exists and given back once it has ended: a signal in between goes
    // to the child (and to nothing else), so it is never lost and never stops taskstore first.
    let child: ReturnType<typeof spawn> | undefined;
    const release = ctx.takeSignals((signal) => {
      child?.kill(signal);
    });
    const finish = (ending: Ending) => {
      release();
      resolve(ending);
    };
    try {
      child = spawn(command[0] as string, command.slice(1), { stdio: ["inherit", "pipe", "pipe"], env: ctx.env });
    } catch (error) {
      finish({ spawnError: error as Error });
      return;
    }
    let failed: Error | undefined;
    child.on("error", (error) => {
      failed ??= error;
    });
    for (const [stream, type, terminal] of [
      [child.stdout, "stdout", ctx.stdout],
      [child.stderr, "stderr", ctx.stderr],
    ] as const) {
      const lines = new LineSplitter((text) => recorder.add(type, text));
      stream?.on("data", (chunk: Buffer) => {
        // The command's own output, as it would print it without taskstore: not task data.
        if (!quiet) terminal.write(chunk);
        lines.push(chunk);
      });
      stream?.on("end", () => lines.end());
    }
    child.on("close", (code, signal) => {
      if (failed && child?.pid === undefined)
        finish({ spawnError: failed }); // never started: ENOENT, EACCES
      else if (signal) finish({ signal });
      else finish({ code: code ?? 1 });
    });
  });
}

function outcome(ending: Ending): { exitCode: number; note: string } {
  if ("spawnError" in ending) {
    const code = (ending.spawnError as NodeJS.ErrnoException).code;
    return { exitCode: code === "EACCES" ? 126 : 127, note: `the command could not be started: ${ending.spawnError.message}` };
  }
  if (ending.signal) {
    const number = constants.signals[ending.signal] ?? 0;
    return { exitCode: 128 + number, note: `killed by ${ending.signal}` };
  }
  return { exitCode: ending.code, note: `exited with code ${ending.code}` };
}

/** The command as a shell would take it back: arguments with anything unusual in single quotes. */
export function commandLine(command: string[]): string {
  return command.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`)).join(" ");
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
