#!/usr/bin/env node
import { main } from "./cli.js";
import { STOP_SIGNALS, type StopSignal } from "./interrupt.js";

let interrupt!: (signal: StopSignal) => void;
const interrupted = new Promise<StopSignal>((resolve) => {
  interrupt = resolve;
});
let signalled: StopSignal | undefined;
const onSignal = (signal: StopSignal) => {
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

const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, interrupted });
finished = true;
process.exitCode = code;
// Every write is durable by now (the store was closed), or refused (an interrupted command: what
// it still waits for, like a lock, is abandoned). A client library that keeps a timer or a socket
// alive must not keep the command from exiting.
setTimeout(() => process.exit(code), 200).unref();
