#!/usr/bin/env node
import { main } from "./cli.js";

let interrupt!: () => void;
const interrupted = new Promise<void>((resolve) => {
  interrupt = resolve;
});
let interrupts = 0;
const onSignal = () => {
  // The first Ctrl-C asks the running verb to stop cleanly (close the store); a second one forces it.
  if (++interrupts > 1) {
    finished = true; // forced by the user, not a silent stop: no "internal error" notice
    process.exit(130);
  }
  interrupt();
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

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
// Every write is durable by now (the store was closed). A client library that keeps a timer or a
// socket alive must not keep the command from exiting.
setTimeout(() => process.exit(code), 200).unref();
