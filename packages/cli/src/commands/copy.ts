import { realpath, stat } from "node:fs/promises";
import path from "node:path";
import type { TaskChange } from "@taskstore/core";
import { parseStoreUrl, type StoreSpec } from "@taskstore/core";
import { type Command, output, stringArg, withStore } from "../command.js";
import { backupFirst, backupNote, confirm, GUARD_OPTIONS, isDryRun } from "../confirm.js";
import { loadDriverModule, storeFile } from "../open-store.js";
import { progressBar } from "../progress.js";
import { escapeText } from "../text.js";
import { TargetNotEmptyError, UsageError } from "../usage-error.js";

/** Tasks per atomic write: small enough for a live progress bar, large enough to be quick. */
const CHUNK = 200;

export const copy: Command = {
  name: "copy",
  summary: "copy every task, log and relation from one store to another",
  usage: "copy --to URL [--from URL] [--force | --merge] [--yes] [--dry-run]",
  details: `--from defaults to the store (--store / TASKSTORE_URL / the default file).
A target that already holds tasks is refused (exit 12) unless:
  --force  replace it: the target's tasks are deleted first, so it ends up holding exactly the source's
  --merge  keep the target's tasks; a source task with the same id overwrites the target's
--force on a terminal asks y/N first (--yes does not ask; off a terminal it does not ask), and
backs the target up first when its driver can (taskstore --store TARGET restore undoes it).
--dry-run says what would be copied and replaced, and changes nothing.
Tasks are written in atomic batches of ${CHUNK}; an interrupted copy leaves the batches already written.
A progress bar (count, rate, time left) goes to stderr when stderr is a terminal.
--json prints { "from", "to", "tasks", "logEntries", "mode", "replaced"?, "backedUp"? } ("dryRun": true with --dry-run).
Example: taskstore copy --from file:~/.config/kilocode/tasks.json --to sqlite:/var/lib/agent/tasks.db`,
  options: {
    from: { type: "string", value: "URL", description: "the source store (default: the store)" },
    to: { type: "string", value: "URL", description: "the target store" },
    force: { type: "boolean", description: "replace a non-empty target" },
    merge: { type: "boolean", description: "add to a non-empty target, overwriting same ids" },
    ...GUARD_OPTIONS,
  },
  positionals: { min: 0, max: 0 },
  async run(ctx, args) {
    const fromUrl = stringArg(args, "from") ?? ctx.storeUrl;
    const toUrl = stringArg(args, "to");
    if (toUrl === undefined) throw new UsageError("copy needs --to URL", "copy");
    const force = args.values.force === true;
    const merge = args.values.merge === true;
    if (force && merge) throw new UsageError("give --force or --merge, not both", "copy");
    // Parsed up front, so a bad target URL fails before the source is even opened.
    const fromSpec = parseStoreUrl(fromUrl);
    const fromDisplay = fromSpec.display;
    const toSpec = parseStoreUrl(toUrl);
    // The same store by any name (the default path and its explicit form, a symlinked folder, a
    // hard link, "localhost" and "127.0.0.1"): copying onto itself with --force empties it first.
    const [fromId, toId] = await Promise.all([storeIdentity(fromSpec), storeIdentity(toSpec)]);
    if (fromId === toId) throw new UsageError(`--from and --to are the same store (${escapeText(toSpec.display)})`, "copy");

    const tasks = await withStore(ctx, (source) => source.repository.loadAll(), { url: fromUrl });
    const dryRun = isDryRun(args);
    const result = await withStore(
      ctx,
      async (target) => {
        const existing = await target.repository.loadAll();
        if (existing.length > 0 && !force && !merge) {
          throw new TargetNotEmptyError(
            `the target ${target.display} already holds ${existing.length} tasks: use --force to replace them or --merge to add to them`,
          );
        }
        const summary = {
          from: fromDisplay,
          to: target.display,
          tasks: tasks.length,
          logEntries: tasks.reduce((n, task) => n + task.logs.length, 0),
          ...(force ? { replaced: existing.length } : {}),
        };
        if (dryRun) return { ...summary, dryRun: true as const };
        let backup: string | boolean = false;
        if (force && existing.length > 0) {
          await confirm(
            ctx,
            args,
            escapeText(`replace the ${existing.length} tasks of ${target.display} with the ${tasks.length} tasks of ${fromDisplay}?`),
          );
          backup = await backupFirst(target);
          const at = Date.now();
          await target.repository.apply(
            existing.map((task): TaskChange => ({ type: "remove", id: task.id, at })),
            { operation: "copy" },
          );
        }
        const bar = progressBar(ctx, "copy", tasks.length);
        try {
          for (let i = 0; i < tasks.length; i += CHUNK) {
            await target.repository.saveMany(tasks.slice(i, i + CHUNK));
            bar.tick(Math.min(tasks.length, i + CHUNK));
          }
        } finally {
          bar.done();
        }
        return { ...summary, dryRun: false as const, ...(force && existing.length > 0 ? { backedUp: backup !== false } : {}), backup };
      },
      { url: toUrl },
    );
    const mode = force ? "replace" : merge ? "merge" : "new";
    const { dryRun: dry, backup, ...report } = { backup: false as string | boolean, ...result };
    const replaced = report.replaced ? `, replacing its ${report.replaced} tasks` : "";
    const what = `${report.tasks} tasks and ${report.logEntries} log entries from ${report.from} to ${report.to}${replaced}`;
    if (dry) output(ctx, `${escapeText(`would copy ${what}`)} (dry run: nothing was changed)`, { ...report, mode, dryRun: true });
    else output(ctx, `${escapeText(`copied ${what}`)}${backupNote(backup)}`, { ...report, mode });
  },
};

/**
 * What a store is, whatever it is called: for a file store, the file itself (device and inode
 * once it exists, else the real path of its folder and its name: symlinks and `.` resolved); for
 * a server, the URL's parts that choose the store, normalised (host case, default port, database,
 * prefix or schema; credentials and client options left out). Two specs with the same identity
 * are the same store.
 */
export async function storeIdentity(spec: StoreSpec): Promise<string> {
  if (spec.kind === "file" || spec.kind === "sqlite") {
    const file = storeFile(spec, spec.options.path === undefined ? await loadDriverModule(spec) : undefined);
    return file === undefined ? `${spec.kind}:${spec.display}` : `file:${await fileIdentity(file)}`;
  }
  const options = spec.options;
  switch (spec.kind) {
    case "redis": {
      const url = new URL(String(options.url));
      const db = url.pathname.replace(/^\//, "") || "0";
      return `redis://${hostOf(url)}:${url.port || "6379"}/${Number(db)}#${String(options.prefix ?? "taskstore")}`;
    }
    case "postgres": {
      const url = new URL(String(options.connectionString));
      const database = decodeURIComponent(url.pathname.replace(/^\//, "")) || decodeURIComponent(url.username) || "postgres";
      return `postgres://${hostOf(url)}:${url.port || "5432"}/${database}#${String(options.schema ?? "taskstore")}`;
    }
    case "s3": {
      let prefix = String(options.prefix ?? "taskstore/");
      if (prefix !== "" && !prefix.endsWith("/")) prefix += "/";
      const endpoint = typeof options.endpoint === "string" ? normalEndpoint(options.endpoint) : "aws";
      return `s3://${endpoint}/${String(options.bucket)}/${prefix}`;
    }
  }
}

/** The file's identity: device and inode when it exists, else its real folder and name. */
async function fileIdentity(file: string): Promise<string> {
  try {
    const stats = await stat(file);
    return `dev ${stats.dev} ino ${stats.ino}`;
  } catch {
    return `path ${await realPathOf(file)}`;
  }
}

/** `file` with every symlink of its existing part resolved (the part that does not exist yet kept as written). */
async function realPathOf(file: string): Promise<string> {
  const resolved = path.resolve(file);
  try {
    return await realpath(resolved);
  } catch {
    const parent = path.dirname(resolved);
    if (parent === resolved) return resolved;
    return path.join(await realPathOf(parent), path.basename(resolved));
  }
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]", "::1"]);

function hostOf(url: URL): string {
  const host = url.hostname.toLowerCase();
  return LOOPBACK.has(host) ? "loopback" : host;
}

function normalEndpoint(endpoint: string): string {
  try {
    const url = new URL(endpoint);
    const port = url.port || (url.protocol === "https:" ? "443" : "80");
    return `${url.protocol}//${hostOf(url)}:${port}${url.pathname.replace(/\/+$/, "")}`;
  } catch {
    return endpoint;
  }
}
