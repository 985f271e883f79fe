import { createInterface } from "node:readline";
import { redactText } from "@taskstore/core";
import type { Context, OptionSpec, ParsedArgs } from "./command.js";
import type { OpenStore } from "./open-store.js";
import { escapeText } from "./text.js";

/**
 * The guard of a destructive verb (`rm`, `restore`, `copy --force`): on a terminal it asks first;
 * `--yes` does not ask; `--dry-run` says what would change and writes nothing. Off a terminal
 * (a script, a pipe, CI) it does not ask, as before: a command line that worked in a script keeps
 * working.
 */
export const GUARD_OPTIONS: Record<string, OptionSpec> = {
  yes: { type: "boolean", short: "y", description: "do not ask for confirmation on a terminal" },
  "dry-run": { type: "boolean", description: "print what would change, and change nothing" },
};

/** The user answered no (or nothing) to a destructive verb's question. Exit code 14. */
export class NotConfirmedError extends Error {
  readonly code = "NOT_CONFIRMED";
  constructor() {
    super("not confirmed: nothing was changed");
    this.name = "NotConfirmedError";
  }
}

export function isDryRun(args: ParsedArgs): boolean {
  return args.values["dry-run"] === true;
}

/**
 * Asks `question` with `[y/N]` on stderr and reads the answer from stdin, when both are a terminal
 * and `--yes` was not given; anything but y or yes throws `NotConfirmedError`. `question` is made
 * of escaped text.
 */
export async function confirm(ctx: Context, args: ParsedArgs, question: string): Promise<void> {
  if (args.values.yes === true || ctx.stdin.isTTY !== true || ctx.stderr.isTTY !== true) return;
  const lines = createInterface({ input: ctx.stdin, output: ctx.stderr });
  const answer = await new Promise<string>((resolve) => {
    lines.once("close", () => resolve("")); // Ctrl-D: no
    lines.question(`taskstore: ${question} [y/N] `, resolve);
  });
  lines.close();
  if (!/^\s*y(es)?\s*$/i.test(answer)) throw new NotConfirmedError();
}

/**
 * Backs the store up before a destructive change, when its driver can (`capabilities.backup`):
 * the change can then be undone with `taskstore restore`. Resolves with where the backup went
 * (as far as the driver says), `true` when it does not say, or `false` when the driver has no
 * backup. A failed backup throws, and the change is not made.
 */
export async function backupFirst(store: OpenStore): Promise<string | boolean> {
  if (!(await store.repository.capabilities()).backup) return false;
  await store.repository.backup();
  const description = await store.driver.describe?.().catch(() => undefined);
  const location = description?.backupLocation;
  return typeof location === "string" ? redactText(location) : true;
}

/** " (backed up first to X)" for a human message. */
export function backupNote(backup: string | boolean): string {
  if (backup === false) return "";
  return typeof backup === "string" ? ` (backed up first to ${escapeText(backup)})` : " (backed up first)";
}
