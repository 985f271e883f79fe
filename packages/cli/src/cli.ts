import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { type Command, type Context, durationArg, type OptionSpec, type ParsedArgs } from "./command.js";
import { backupsVerb, backupVerb, restoreVerb } from "./commands/backups.js";
import { completeWords, completion, registry } from "./commands/completion.js";
import { copy } from "./commands/copy.js";
import { diagnose } from "./commands/diagnose.js";
import { log } from "./commands/log.js";
import { run } from "./commands/run.js";
import { migrate, reseal } from "./commands/store.js";
import { add, assign, cancel, complete, edit, fail, link, pause, progress, resume, retry, rm, start } from "./commands/tasks.js";
import { list, show } from "./commands/view.js";
import { EXIT_CODES, reportError } from "./exit-codes.js";
import { SignalRouter, STOP_SIGNALS, type StopSignal, WriteGate } from "./interrupt.js";
import { escapeText, jsonText } from "./text.js";
import { UsageError } from "./usage-error.js";

/**
 * How long an interrupted command lets a write already in flight (holding the store's lock)
 * finish. Writes are atomic, so stopping at any moment is safe; letting it finish makes the
 * outcome known. A second signal ends the command at once.
 */
const WRITE_GRACE_MS = 3_000;

/** Every verb, in the order the help lists them. */
export const COMMANDS: Command[] = [
  add,
  edit,
  list,
  show,
  start,
  pause,
  resume,
  complete,
  fail,
  cancel,
  retry,
  progress,
  log,
  run,
  link,
  assign,
  rm,
  backupVerb,
  backupsVerb,
  restoreVerb,
  reseal,
  migrate,
  copy,
  diagnose,
  completion,
  completeWords,
];

const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  store: { type: "string", value: "URL", description: "the store (default: $TASKSTORE_URL, else the JSON file)" },
  json: { type: "boolean", description: "machine-readable output on stdout (and errors as JSON on stderr)" },
  "lock-timeout": {
    type: "string",
    value: "DURATION",
    description: "how long to wait for the store's lock (default $TASKSTORE_LOCK_TIMEOUT, else 30s)",
  },
  help: { type: "boolean", short: "h", description: "help (for a verb: taskstore <verb> --help, or taskstore help <verb>)" },
  version: { type: "boolean", short: "V", description: "the version" },
};

export interface MainIO {
  stdout: Context["stdout"];
  stderr: Context["stderr"];
  /** For `log --stdin` and the prompts of destructive verbs (default: `process.stdin`). */
  stdin?: Context["stdin"];
  env: NodeJS.ProcessEnv;
  /** Resolves on SIGINT/SIGTERM, with the signal's name (taken as "SIGINT" when it resolves with anything else). */
  interrupted: Promise<unknown>;
  /**
   * Instead of `interrupted`, every SIGINT/SIGTERM: `main` gives a router that answers true when
   * the command took the signal over (`run` passes it to its child), false when it stops the
   * command (the caller may then end the process at a second signal).
   */
  signals?: (route: (signal: StopSignal) => boolean) => void;
  /** Resolves when stdout was closed by its reader (EPIPE): a verb that writes until stopped ends. */
  outputClosed?: Promise<unknown>;
}

/** Runs one command line; resolves with the exit code. Never throws. */
export async function main(argv: string[], io: MainIO): Promise<number> {
  const dashes = argv.indexOf("--");
  let json = (dashes === -1 ? argv : argv.slice(0, dashes)).includes("--json");
  const router = new SignalRouter();
  if (io.signals) io.signals((signal) => router.deliver(signal));
  else io.interrupted.then((signal) => router.deliver(signal === "SIGTERM" ? "SIGTERM" : "SIGINT"));
  try {
    const verbAt = findVerb(argv);
    const verbName = verbAt === -1 ? undefined : argv[verbAt];
    const rest = verbAt === -1 ? argv : [...argv.slice(0, verbAt), ...argv.slice(verbAt + 1)];
    const command = verbName === undefined ? undefined : findCommand(verbName);
    if (verbName !== undefined && !command) {
      throw new UsageError(`unknown verb "${verbName}"; the verbs are: ${visibleNames().join(", ")}`);
    }
    // A verb that runs a command (`run -- make test`) takes everything after `--` as it is.
    const dashAt = command?.takesCommand ? rest.indexOf("--") : -1;
    const args = parse(dashAt === -1 ? rest : rest.slice(0, dashAt), command);
    if (dashAt !== -1) args.command = rest.slice(dashAt + 1);
    json = args.values.json === true;
    if (args.values.version === true) {
      io.stdout.write(`${version()}\n`);
      return EXIT_CODES.OK;
    }
    if (args.values.help === true || !command) {
      if (!command && args.values.help !== true) {
        if (rest.length > 0) throw new UsageError("no verb given");
        io.stderr.write(topHelp());
        return EXIT_CODES.USAGE;
      }
      io.stdout.write(command ? verbHelp(command) : topHelp());
      return EXIT_CODES.OK;
    }
    const { min, max } = command.positionals;
    if (command.takesCommand && args.positionals.length > max) {
      throw new UsageError(`put the command after --: taskstore ${command.name} -- ${args.positionals.join(" ")}`, command.name);
    }
    if (args.positionals.length < min) throw new UsageError(`missing arguments: taskstore ${command.usage}`, command.name);
    if (args.positionals.length > max) {
      throw new UsageError(
        `too many arguments (${args.positionals.map((p) => jsonText(p)).join(" ")}): taskstore ${command.usage}`,
        command.name,
      );
    }
    const storeFlag = typeof args.values.store === "string" ? args.values.store : undefined;
    const lockRaw =
      typeof args.values["lock-timeout"] === "string" ? args.values["lock-timeout"] : io.env.TASKSTORE_LOCK_TIMEOUT || undefined;
    const gate = new WriteGate();
    const ctx: Context = {
      storeUrl: storeFlag ?? (io.env.TASKSTORE_URL || undefined),
      json,
      lockTimeoutMs: durationArg(lockRaw, "--lock-timeout", command.name),
      stdout: io.stdout,
      stderr: io.stderr,
      stdin: io.stdin ?? process.stdin,
      env: io.env,
      interrupted: router.stopped,
      outputClosed: (io.outputClosed ?? new Promise<never>(() => undefined)).then(() => undefined),
      takeSignals: (listener) => router.take(listener),
      gate,
    };
    const running = command.run(ctx, args);
    if (command.runsUntilInterrupted?.(args)) {
      // It ends by itself on the signal (or when its output is closed).
      return exitCodeOf(await running);
    }
    // Any other command is stopped here at the first SIGINT/SIGTERM, whatever it is waiting for.
    const outcome = await Promise.race([
      running.then((code) => ({ done: true as const, code })),
      router.stopped.then((signal) => ({ done: false as const, signal })),
    ]);
    if (outcome.done) return exitCodeOf(outcome.code);
    running.catch(() => undefined); // it may still fail, refused by the gate: nothing to report
    return await interrupted(io, json, gate, outcome.signal);
  } catch (error) {
    const report = reportError(error);
    const verb = (error as { verb?: unknown }).verb;
    const hint = report.code === "USAGE" ? ` (see taskstore ${typeof verb === "string" ? `${verb} ` : ""}--help)` : "";
    const candidates = (error as { candidates?: unknown }).candidates;
    const extra = Array.isArray(candidates) ? { candidates } : {};
    if (json)
      io.stderr.write(`${jsonText({ error: { code: report.code, exitCode: report.exitCode, message: report.message, ...extra } })}\n`);
    else io.stderr.write(`taskstore: ${escapeText(report.message)}${hint}\n`);
    return report.exitCode;
  }
}

/** What a verb's work resolved with, as an exit code. */
function exitCodeOf(value: unknown): number {
  return typeof value === "number" ? value : EXIT_CODES.OK;
}

/** A verb by name, the hidden ones included. */
function findCommand(name: string): Command | undefined {
  return COMMANDS.find((c) => c.name === name);
}

/** `taskstore help` (the verbs) and `taskstore help VERB` (one verb), on stdout, exit 0. */
const helpVerb: Command = {
  name: "help",
  summary: "this help, or one verb's: taskstore help VERB",
  usage: "help [verb]",
  details: "The same as taskstore --help, or taskstore <verb> --help.",
  options: {},
  positionals: { min: 0, max: 1 },
  completes: ["verb"],
  async run(ctx, args) {
    const [name] = args.positionals;
    if (name === undefined) {
      ctx.stdout.write(topHelp());
      return;
    }
    const command = findCommand(name);
    if (!command) throw new UsageError(`unknown verb "${name}"; the verbs are: ${visibleNames().join(", ")}`, "help");
    ctx.stdout.write(verbHelp(command));
  },
};
COMMANDS.push(helpVerb);
registry.commands = COMMANDS;
registry.globals = GLOBAL_OPTIONS;

function visibleNames(): string[] {
  return COMMANDS.filter((c) => !c.hidden).map((c) => c.name);
}

/**
 * Stops an interrupted command: no write may begin any more, a write in flight gets
 * `WRITE_GRACE_MS` to finish, and the command reports what happened. Exit 130 (SIGINT) or 143
 * (SIGTERM).
 */
async function interrupted(io: MainIO, json: boolean, gate: WriteGate, signal: StopSignal): Promise<number> {
  gate.stop();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    gate.idle(),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, WRITE_GRACE_MS);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
  const exitCode = STOP_SIGNALS[signal] ?? STOP_SIGNALS.SIGINT;
  const what = gate.finished === 0 ? "nothing was written" : "some of its changes had been written, and they stay";
  const message = `interrupted by ${signal} (${what})`;
  if (json) io.stderr.write(`${jsonText({ error: { code: "INTERRUPTED", exitCode, signal, message } })}\n`);
  else io.stderr.write(`taskstore: ${message}\n`);
  return exitCode;
}

/** The index of the verb: the first argument that is neither an option nor a global option's value. */
function findVerb(argv: string[]): number {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--") return i + 1 < argv.length ? i + 1 : -1;
    if (arg === "--store" || arg === "--lock-timeout") {
      i++;
      continue;
    }
    if (arg.startsWith("-")) continue;
    return i;
  }
  return -1;
}

function parse(args: string[], command: Command | undefined): ParsedArgs {
  const options = { ...GLOBAL_OPTIONS, ...(command?.options ?? {}) };
  const config: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {};
  for (const [name, spec] of Object.entries(options)) {
    config[name] = { type: spec.type, ...(spec.short ? { short: spec.short } : {}), ...(spec.multiple ? { multiple: true } : {}) };
  }
  try {
    const { values, positionals } = parseArgs({ args, options: config, allowPositionals: true, strict: true });
    return { values: values as ParsedArgs["values"], positionals };
  } catch (error) {
    // parseArgs' messages are clear but long; keep their first sentence.
    const message = (error as Error).message.split(". ")[0] as string;
    throw new UsageError(message.replace(/^Unknown option/, "unknown option"), command?.name);
  }
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

function optionLines(options: Record<string, OptionSpec>): string[] {
  const entries = Object.entries(options).map(([name, spec]) => {
    const flag = `${spec.short ? `-${spec.short}, ` : "    "}--${name}${spec.value ? ` ${spec.value}` : ""}`;
    return [flag, spec.description] as const;
  });
  const width = Math.max(0, ...entries.map(([flag]) => flag.length));
  return entries.map(([flag, text]) => `  ${flag.padEnd(width)}  ${text}`);
}

export function verbHelp(command: Command): string {
  const lines = [`Usage: taskstore ${command.usage}`, "", `${command.summary}.`];
  if (command.details) lines.push("", command.details);
  if (Object.keys(command.options).length > 0) lines.push("", "Options:", ...optionLines(command.options));
  lines.push("", "Global options:", ...optionLines(GLOBAL_OPTIONS), "");
  return lines.join("\n");
}

export function topHelp(): string {
  const shown = COMMANDS.filter((c) => !c.hidden);
  const width = Math.max(...shown.map((c) => c.name.length));
  return [
    "Usage: taskstore [--store URL] [--json] <verb> [arguments] [options]",
    "",
    "The durable task store of a coding agent, from the shell.",
    "",
    "Verbs:",
    ...shown.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Global options:",
    ...optionLines(GLOBAL_OPTIONS),
    "",
    "Stores (--store URL or TASKSTORE_URL; default: the JSON file ~/.config/kilocode/tasks.json):",
    "  file:/path/tasks.json  (or file:~/..., file:./..., file:///..., or a bare path)   @taskstore/driver-json-file",
    "  sqlite:/path/tasks.db                                                           @taskstore/driver-sqlite",
    "  redis://[user:password@]host[:port][/db][?prefix=name]  (rediss:// for TLS)      @taskstore/driver-redis",
    "  s3://bucket[/prefix][?endpoint=URL&region=R&forcePathStyle=true]  (keys: AWS_*)  @taskstore/driver-s3",
    "  postgres://user[:password]@host[:port]/db[?schema=name]  (postgresql: too)      @taskstore/driver-postgres",
    "",
    "Exit codes: 0 ok, 1 unexpected, 2 usage or invalid input, 3 not found, 4 invalid transition or cycle,",
    "  5 lock timeout, 6 corrupt store (no usable backup), 7 storage unavailable (nothing written),",
    "  8 driver package not installed, 9 store written by a newer major version, 10 conflict,",
    "  11 not supported by the driver, 12 copy target not empty, 13 ambiguous id prefix, 14 not confirmed,",
    "  15 sealed tasks and no key that opens them (TASKSTORE_KEY / TASKSTORE_KEY_FILE),",
    "  130/143 interrupted (SIGINT/SIGTERM); run: the command's own exit code.",
    "",
    "Ids: a task's whole id, or a prefix of at least 4 characters that only one id starts with.",
    "",
    'Start: taskstore add "My first task" && taskstore list',
    "",
  ].join("\n");
}
