#!/usr/bin/env node
import { main } from "./cli.js";
import { STOP_SIGNALS, type StopSignal } from "./interrupt.js";

// The user's environment as it came: `run` hands it to the command it runs, unchanged by what
// follows.
const userEnv = { ...process.env };
// The AWS SDK (the s3: driver) warns on every start under Node < 22 that its releases of 2027 will
// need Node 22: noise on every s3: command, about a library, that the user cannot act on here. Set
// for this process only (a user's own "false" is kept), so a command started by `run` still sees
// the environment as the user set it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

// A closed pipe (`taskstore list | head -1`) is not an error of the command: whoever read its
// output has all they wanted. The write fails with EPIPE (Node ignores SIGPIPE), reported as an
// 'error' event that would otherwise crash with a stack trace. The command ends quietly with its
// own exit code; a verb that writes until stopped (`log --follow`) ends with 0.
let closeOutput!: () => void;
const outputClosed = new Promise<void>((resolve) => {
  closeOutput = resolve;
});
let stdoutClosed = false;
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (stdoutClosed || error.code === "EPIPE") {
    stdoutClosed = true;
    closeOutput();
    return;
  }
  throw error;
});
let stderrClosed = false;
process.stderr.on("error", (error: NodeJS.ErrnoException) => {
  if (stderrClosed || error.code === "EPIPE") {
    stderrClosed = true; // nowhere left to say anything
    return;
  }
  throw error;
});

let interrupt!: (signal: StopSignal) => void;
const interrupted = new Promise<StopSignal>((resolve) => {
  interrupt = resolve;
});
let route: ((signal: StopSignal) => boolean) | undefined;
let signalled: StopSignal | undefined;
const onSignal = (signal: StopSignal) => {
  // A verb running a child process (`run`) passes every signal on while the child lives.
  if (route?.(signal)) return;
  // The first SIGINT/SIGTERM stops the command cleanly (main reports it: exit 130/143; `log
  // --follow` ends with exit 0); a second one ends the process at once.
  if (signalled) {
    finished = true; // forced by the user, not a silent stop: no "internal error" notice
    process.stderr.write(`taskstore: ${signal} again: stopped at once\n`);
    process.exit(STOP_SIGNALS[signal]);
  }
  signalled = signal;
  interrupt(signal);
};
process.on("SIGINT", () => onSignal("SIGINT"));
process.on("SIGTERM", () => onSignal("SIGTERM"));

// A command whose work stops without settling (a bug, in the CLI or a library it uses) must not
// look like success: Node would exit with 0 once nothing is left to run.
let finished = false;
process.on("exit", () => {
  if (finished) return;
  process.stderr.write("taskstore: internal error: the command stopped before it finished; its change may not be written\n");
  process.exitCode = 1;
});

const code = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: userEnv,
  interrupted,
  signals: (listener) => {
    route = listener;
  },
  outputClosed,
});
finished = true;
process.exitCode = code;
// Every write is durable by now (the store was closed), or refused (an interrupted command: what
// it still waits for, like a lock, is abandoned). A client library that keeps a timer or a socket
// alive must not keep the command from exiting.
setTimeout(() => process.exit(code), 200).unref();
