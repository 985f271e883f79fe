import { createHash } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { type BackupPoint, IncrementalBackups, type RetentionRule } from "@taskstore/core";
import {
  type Command,
  type Context,
  durationArg,
  numberArg,
  type OptionSpec,
  output,
  type ParsedArgs,
  stringArg,
  withStore,
} from "../command.js";
import { confirm, isDryRun } from "../confirm.js";
import { type OpenStore, storeFile } from "../open-store.js";
import { formatBytes, formatTime } from "../render.js";
import { escapeText } from "../text.js";
import { UsageError } from "../usage-error.js";
import { backup, restore } from "./store.js";

/*
 * Incremental backups from the command line (core's IncrementalBackups): `backup --incremental`
 * adds a point to a chain in a folder, `backups` lists the points, `restore --point ID` puts the
 * store back as it was at one. The chain's folder is `--to DIR`, by default beside a file store
 * (`tasks.backups/` beside `tasks.json`, `tasks.db.backups/` beside `tasks.db`) and, for a server
 * store, `~/.config/kilocode/backups/<scheme>-<hash of the URL>/`.
 */

const TO: OptionSpec = {
  type: "string",
  value: "DIR",
  description: "the chain's folder (default: beside a file store, else ~/.config/kilocode/backups/)",
};
const RULE_OPTIONS: Record<string, OptionSpec> = {
  keep: { type: "string", value: "N", description: "retention: keep the last N points (default 30 when no rule is given)" },
  "max-age": {
    type: "string",
    value: "DURATION",
    description: "retention: keep the points younger than this (30m, 12h, 7d); with --keep, either keeps a point",
  },
};

/** `backup`, plus `--incremental` and its options. */
export const backupVerb: Command = {
  ...backup,
  summary: "make a restorable copy of the store (--incremental: a point holding only what changed)",
  usage: "backup [--incremental [--to DIR] [--keep N] [--max-age DURATION] [--full]]",
  details: `${backup.details}

With --incremental: adds a point to the store's backup chain, a folder holding a base (the whole
store) and then points holding only what changed since the one before (tasks added or changed,
ids removed); nothing is written when nothing changed. The retention rule then drops the oldest
points (what the kept ones are built on is folded into a new base). A sealed store's points are
sealed with its keys. --full makes the point a base. --json prints { "point", "written", "pruned", "dir", "store" }.`,
  options: {
    ...backup.options,
    incremental: { type: "boolean", description: "add a point to the incremental backup chain" },
    to: TO,
    ...RULE_OPTIONS,
    full: { type: "boolean", description: "with --incremental: make the point a base (the whole store)" },
  },
  async run(ctx, args) {
    if (args.values.incremental !== true) {
      const stray = ["to", "keep", "max-age", "full"].find((name) => args.values[name] !== undefined);
      if (stray) throw new UsageError(`--${stray} goes with --incremental`, "backup");
      return backup.run(ctx, args);
    }
    const rule = ruleOf(args, "backup");
    const result = await withStore(ctx, async (store) => {
      const dir = chainDir(ctx, store, args);
      const made = await new IncrementalBackups(store.repository, { dir, ...rule }).backup({ full: args.values.full === true });
      return { ...made, dir, store: store.display };
    });
    const pruned = result.pruned.length > 0 ? `; the retention rule removed ${result.pruned.length} older point(s)` : "";
    const text = result.written
      ? `backed up ${result.store}: point ${describe(result.point)} in ${result.dir}${pruned}`
      : `nothing changed in ${result.store} since point ${result.point.id}: no new point (${result.dir})${pruned}`;
    output(ctx, escapeText(text), result);
  },
};

export const backupsVerb: Command = {
  name: "backups",
  summary: "list the points of the store's incremental backup chain (--prune: apply the retention rule now)",
  usage: "backups [--to DIR] [--prune [--keep N] [--max-age DURATION]]",
  details: `Oldest first: each point's id (what restore --point takes; a unique prefix of 4 or more
characters will do), whether it is a base (the whole store) or a delta (what changed since the
one before), when it was made, its tasks, what changed, and its size. --prune applies the rule
and folds what the points removed still hold into a new base at once, so no file keeps their data.
--json prints { "dir", "points": [{ "id", "kind", "parent", "createdAt", "tasks", "changed", "removed", "bytes", "keyId"?, "note"? }], "pruned"? }.`,
  options: { to: TO, prune: { type: "boolean", description: "apply the retention rule now" }, ...RULE_OPTIONS },
  positionals: { min: 0, max: 0 },
  async run(ctx, args) {
    if (args.values.prune !== true && (args.values.keep !== undefined || args.values["max-age"] !== undefined)) {
      throw new UsageError("--keep and --max-age go with --prune (or with backup --incremental)", "backups");
    }
    const rule = ruleOf(args, "backups");
    const result = await withStore(ctx, async (store) => {
      const dir = chainDir(ctx, store, args);
      const backups = new IncrementalBackups(store.repository, { dir, ...rule });
      const pruned = args.values.prune === true ? await backups.prune() : undefined;
      return { dir, points: await backups.list(), ...(pruned ? { pruned } : {}) };
    });
    const lines =
      result.points.length === 0 ? [`no backup points in ${result.dir}`] : [`backup points in ${result.dir}:`, ...table(result.points)];
    if (result.pruned) lines.push(`pruned ${result.pruned.length} point(s)`);
    output(ctx, lines.map(escapeText).join("\n"), result);
  },
};

/** `restore`, plus `--point ID`. */
export const restoreVerb: Command = {
  ...restore,
  summary: "put the last backup in place of the store (--point ID: the store as it was at a backup point)",
  usage: "restore [--point ID [--to DIR]] [--yes] [--dry-run]",
  details: `${restore.details}

With --point: the store as it was at that point of its incremental backup chain (taskstore
backups lists them), on any driver (no restore capability needed). Every file the point needs is checked first: a damaged or missing one is
exit 6 naming the point, a sealed chain without its key exit 15, and nothing is written. The
store as it is now is first kept as a new point (the restore can be undone with restore --point),
then replaced in one write under the store's lock. --json prints { "point", "tasks", "keptAs", "dir" }
(with --dry-run: { "dryRun": true, "point", "tasks", "dir" }).`,
  options: { ...restore.options, point: { type: "string", value: "ID", description: "a point of the incremental backup chain" }, to: TO },
  async run(ctx, args) {
    const id = stringArg(args, "point");
    if (id === undefined) {
      if (args.values.to !== undefined) throw new UsageError("--to goes with --point", "restore");
      return restore.run(ctx, args);
    }
    const result = await withStore(
      ctx,
      async (store) => {
        const dir = chainDir(ctx, store, args);
        const backups = new IncrementalBackups(store.repository, { dir });
        const { point, data } = await backups.read(id);
        if (isDryRun(args)) return { dryRun: true as const, point, tasks: data.tasks.length, dir, store: store.display };
        await confirm(
          ctx,
          args,
          escapeText(`replace ${store.display} with backup point ${describe(point)}? The current store is kept as a new point.`),
        );
        const restored = await backups.restore(point.id);
        return { dryRun: false as const, ...restored, dir, store: store.display };
      },
      { writes: true },
    );
    if (result.dryRun) {
      const text = `would restore ${result.store} to point ${describe(result.point)} (dry run: nothing was changed)`;
      output(ctx, escapeText(text), { dryRun: true, point: result.point, tasks: result.tasks, dir: result.dir });
      return;
    }
    const text = `restored ${result.store} to point ${result.point.id} (${result.tasks} task(s)); the replaced store is kept as point ${result.keptAs.id}`;
    output(ctx, escapeText(text), { point: result.point, tasks: result.tasks, keptAs: result.keptAs, dir: result.dir });
  },
};

function ruleOf(args: ParsedArgs, verb: string): RetentionRule {
  const keep = numberArg(stringArg(args, "keep"), "--keep", verb, { integer: true, min: 1 });
  const maxAge = stringArg(args, "max-age");
  // Days too, for a retention rule: 7d.
  const days = maxAge !== undefined ? /^(\d+(?:\.\d+)?)d$/.exec(maxAge.trim()) : null;
  const maxAgeMs = days ? Math.round(Number(days[1]) * 86_400_000) : durationArg(maxAge, "--max-age", verb);
  if (maxAgeMs !== undefined && maxAgeMs <= 0) throw new UsageError("--max-age must be longer than 0", verb);
  return { ...(keep !== undefined ? { keep } : {}), ...(maxAgeMs !== undefined ? { maxAgeMs } : {}) };
}

/** `--to`, else the default folder of the store's chain. */
export function chainDir(ctx: Context, store: OpenStore, args: ParsedArgs): string {
  const given = stringArg(args, "to");
  if (given !== undefined) return path.resolve(given);
  const file = store.spec.kind === "file" ? store.display.replace(/^file:/, "") : storeFile(store.spec);
  if (file !== undefined) {
    const name = path.basename(file);
    return path.join(path.dirname(file), `${store.spec.kind === "file" ? name.replace(/\.json$/i, "") : name}.backups`);
  }
  const digest = createHash("sha256").update(store.display).digest("hex").slice(0, 12);
  return path.join(configHome(ctx.env), "kilocode", "backups", `${store.spec.kind}-${digest}`);
}

function configHome(env: NodeJS.ProcessEnv): string {
  if (process.platform === "win32" && env.APPDATA) return env.APPDATA;
  if (env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME)) return env.XDG_CONFIG_HOME;
  return path.join(env.HOME || os.homedir(), ".config");
}

function describe(point: BackupPoint): string {
  const what = point.kind === "base" ? `base, ${point.tasks} task(s)` : `delta, ${point.changed} changed, ${point.removed} removed`;
  return `${point.id} (${what}, ${formatBytes(point.bytes)}, made ${formatTime(point.createdAt)})`;
}

function table(points: BackupPoint[]): string[] {
  const rows = [
    ["point", "kind", "made", "tasks", "changed", "removed", "size", ""],
    ...points.map((point) => [
      point.id,
      point.kind,
      formatTime(point.createdAt),
      String(point.tasks),
      String(point.changed),
      String(point.removed),
      formatBytes(point.bytes),
      point.note ?? "",
    ]),
  ];
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] as string).length))) ?? [];
  return rows.map((row) =>
    row
      .map((cell, column) => cell.padEnd(widths[column] as number))
      .join("  ")
      .trimEnd(),
  );
}
