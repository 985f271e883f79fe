import { type TaskManager, TaskNotFoundError } from "@taskstore/core";
import { type Command, durationArg, numberArg, output, type ParsedArgs, stringArg, withManager } from "../command.js";
import { backupFirst, backupNote, confirm, GUARD_OPTIONS, isDryRun } from "../confirm.js";
import { resolveId } from "../id-prefix.js";
import { idOf, progressBar } from "../render.js";
import { escapeText } from "../text.js";
import { UsageError } from "../usage-error.js";
import { descendantsOf } from "./view.js";

export const add: Command = {
  name: "add",
  summary: "create a task and print its id",
  usage: "add <title> [--description TEXT] [--parent ID] [--assign AGENT] [--meta KEY=VALUE]... [--meta-json JSON]",
  details: 'Example: taskstore add "Build the project" --parent 01JX... --meta branch=main',
  options: {
    description: { type: "string", short: "d", value: "TEXT", description: "a longer description" },
    parent: { type: "string", short: "p", value: "ID", description: "make it a child of this task", complete: "id" },
    assign: { type: "string", short: "a", value: "AGENT", description: "assign it to an agent" },
    meta: { type: "string", multiple: true, value: "KEY=VALUE", description: "a metadata field (a string); repeatable" },
    "meta-json": { type: "string", value: "JSON", description: "metadata as a JSON object (merged under --meta)" },
  },
  positionals: { min: 1, max: 1 },
  async run(ctx, args) {
    const [title] = args.positionals as [string];
    const metadata = metadataOf(args, "add");
    const description = stringArg(args, "description");
    const parentId = stringArg(args, "parent");
    const assignedTo = stringArg(args, "assign");
    const id = await withManager(ctx, (manager) =>
      manager.create({
        title,
        ...(description !== undefined ? { description } : {}),
        ...(parentId !== undefined ? { parentId: resolveId(manager, parentId) } : {}),
        ...(assignedTo !== undefined ? { assignedTo } : {}),
        ...(metadata ? { metadata } : {}),
      }),
    );
    output(ctx, id, { id });
  },
};

function metadataOf(args: ParsedArgs, verb: string): Record<string, unknown> | undefined {
  let metadata: Record<string, unknown> | undefined;
  const json = stringArg(args, "meta-json");
  if (json !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch (error) {
      throw new UsageError(`--meta-json is not valid JSON: ${(error as Error).message}`, verb);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new UsageError("--meta-json must be a JSON object", verb);
    metadata = parsed as Record<string, unknown>;
  }
  for (const pair of (args.values.meta as string[] | undefined) ?? []) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new UsageError(`--meta takes KEY=VALUE, not "${pair}"`, verb);
    metadata ??= {};
    Object.defineProperty(metadata, pair.slice(0, at), { value: pair.slice(at + 1), enumerable: true, writable: true, configurable: true });
  }
  return metadata;
}

export const edit: Command = {
  name: "edit",
  summary: "change a task's title, description, assignee or metadata",
  usage: "edit <id> [--title TEXT] [--description TEXT] [--assignee AGENT] [--meta KEY=VALUE]... [--meta-json JSON] [--unset-meta KEY]...",
  details: `--meta and --meta-json set metadata fields, keeping the others; --unset-meta removes one.
To unassign, use taskstore assign <id> --none. --json prints { "id", "fields" } (the fields changed).
Example: taskstore edit 01JX --title "Build (release)" --meta branch=release --unset-meta draft`,
  options: {
    title: { type: "string", short: "t", value: "TEXT", description: "the new title" },
    description: { type: "string", short: "d", value: "TEXT", description: "the new description" },
    assignee: { type: "string", short: "a", value: "AGENT", description: "assign it to this agent" },
    meta: { type: "string", multiple: true, value: "KEY=VALUE", description: "set a metadata field (a string); repeatable" },
    "meta-json": { type: "string", value: "JSON", description: "set metadata fields from a JSON object" },
    "unset-meta": { type: "string", multiple: true, value: "KEY", description: "remove a metadata field; repeatable" },
  },
  positionals: { min: 1, max: 1 },
  completes: ["id"],
  async run(ctx, args) {
    const title = stringArg(args, "title");
    const description = stringArg(args, "description");
    const assignedTo = stringArg(args, "assignee");
    const setMeta = metadataOf(args, "edit");
    const unset = (args.values["unset-meta"] as string[] | undefined) ?? [];
    const both = unset.find((key) => setMeta !== undefined && Object.hasOwn(setMeta, key));
    if (both !== undefined) throw new UsageError(`--unset-meta ${both} and a value for ${both}: give one`, "edit");
    if (title === undefined && description === undefined && assignedTo === undefined && setMeta === undefined && unset.length === 0) {
      throw new UsageError("nothing to change: give --title, --description, --assignee, --meta, --meta-json or --unset-meta", "edit");
    }
    const { id, fields } = await withManager(ctx, async (manager) => {
      const id = resolveId(manager, args.positionals[0] as string);
      const current = manager.findById(id);
      if (!current) throw new TaskNotFoundError(id);
      const updates: Record<string, unknown> = {
        ...(title !== undefined ? { title } : {}),
        ...(description !== undefined ? { description } : {}),
        ...(assignedTo !== undefined ? { assignedTo } : {}),
      };
      if (setMeta !== undefined || unset.length > 0) {
        // The whole object is written: the fields not named stay as they are now.
        const metadata: Record<string, unknown> = { ...current.metadata };
        for (const key of unset) delete metadata[key];
        for (const [key, value] of Object.entries(setMeta ?? {})) {
          Object.defineProperty(metadata, key, { value, enumerable: true, writable: true, configurable: true });
        }
        updates.metadata = metadata;
      }
      await manager.update(id, updates);
      return { id, fields: Object.keys(updates) };
    });
    output(ctx, `${id} updated: ${fields.join(", ")}`, { id, fields });
  },
};

type Transition = "start" | "pause" | "resume" | "complete" | "fail" | "cancel" | "retry";

function statusVerb(
  name: Transition,
  summary: string,
  extra: { option?: string; description?: string; call: (manager: TaskManager, id: string, note: string | undefined) => Promise<void> },
): Command {
  return {
    name,
    summary,
    usage: `${name} <id>${extra.option ? ` [--${extra.option} TEXT]` : ""}`,
    details: `--json prints { "id", "status" }.`,
    options: extra.option ? { [extra.option]: { type: "string", value: "TEXT", description: extra.description ?? "" } } : {},
    positionals: { min: 1, max: 1 },
    completes: ["id"],
    async run(ctx, args) {
      const note = extra.option ? stringArg(args, extra.option) : undefined;
      const { id, status } = await withManager(ctx, async (manager) => {
        const id = resolveId(manager, args.positionals[0] as string);
        await extra.call(manager, id, note);
        return { id, status: manager.findById(id)?.status };
      });
      output(ctx, `${id} ${status}`, { id, status });
    },
  };
}

export const start = statusVerb("start", "pending -> running", { call: (m, id) => m.start(id) });
export const pause = statusVerb("pause", "running -> paused", { call: (m, id) => m.pause(id) });
export const resume = statusVerb("resume", "paused -> running", { call: (m, id) => m.resume(id) });
export const complete = statusVerb("complete", "running -> completed (progress 100%)", { call: (m, id) => m.complete(id) });
export const fail = statusVerb("fail", "an unfinished task -> failed (the error goes to its log)", {
  option: "error",
  description: "what went wrong (appended to the log as an error entry)",
  call: (m, id, note) => m.fail(id, note),
});
export const cancel = statusVerb("cancel", "an unfinished task -> cancelled (the reason goes to its log)", {
  option: "reason",
  description: "why (appended to the log as an info entry)",
  call: (m, id, note) => m.cancel(id, note),
});
export const retry = statusVerb("retry", "a failed or cancelled task -> pending, at 0%", { call: (m, id) => m.retry(id) });

export const progress: Command = {
  name: "progress",
  summary: "set a task's progress",
  usage: "progress <id> <percent> [--step N|NAME] [--total N] [--eta DURATION] [--message TEXT]",
  details: `Example: taskstore progress 01JX... 40 --step 2 --total 5 --eta 90s --message "compiling"
DURATION is milliseconds or a number with ms, s, m or h. --json prints { "id", "progress" }.`,
  options: {
    step: { type: "string", value: "N|NAME", description: "the current step (a number or a name)" },
    total: { type: "string", value: "N", description: "the number of steps" },
    eta: { type: "string", value: "DURATION", description: "estimated time remaining" },
    message: { type: "string", short: "m", value: "TEXT", description: "what is happening now" },
  },
  positionals: { min: 2, max: 2 },
  completes: ["id"],
  async run(ctx, args) {
    const [given, rawPercent] = args.positionals as [string, string];
    const percent = numberArg(rawPercent, "percent", "progress", { min: 0, max: 100 }) as number;
    const stepRaw = stringArg(args, "step");
    const currentStep = stepRaw === undefined ? undefined : /^\d+$/.test(stepRaw) ? Number(stepRaw) : stepRaw;
    const totalSteps = numberArg(stringArg(args, "total"), "--total", "progress", { integer: true, min: 0 });
    const estimatedTimeRemaining = durationArg(stringArg(args, "eta"), "--eta", "progress");
    const message = stringArg(args, "message");
    const value = {
      percent,
      ...(currentStep !== undefined ? { currentStep } : {}),
      ...(totalSteps !== undefined ? { totalSteps } : {}),
      ...(estimatedTimeRemaining !== undefined ? { estimatedTimeRemaining } : {}),
      ...(message !== undefined ? { message } : {}),
    };
    const id = await withManager(ctx, async (manager) => {
      const id = resolveId(manager, given);
      await manager.setProgress(id, value);
      return id;
    });
    output(ctx, `${id} ${progressBar(percent)}`, { id, progress: value });
  },
};

export const link: Command = {
  name: "link",
  summary: "make <child> a child of <parent> (moving it from any other parent)",
  usage: "link <parent> <child>",
  details: 'A link that would make a task its own ancestor is refused (exit 4). --json prints { "parentId", "childId" }.',
  options: {},
  positionals: { min: 2, max: 2 },
  completes: ["id", "id"],
  async run(ctx, args) {
    const [parentGiven, childGiven] = args.positionals as [string, string];
    const [parentId, childId] = await withManager(ctx, async (manager) => {
      const ids = [resolveId(manager, parentGiven), resolveId(manager, childGiven)] as const;
      await manager.linkParentChild(...ids);
      return ids;
    });
    output(ctx, `${childId} is now a child of ${parentId}`, { parentId, childId });
  },
};

export const assign: Command = {
  name: "assign",
  summary: "assign a task to an agent (or --none to unassign)",
  usage: "assign <id> <agent> | assign <id> --none",
  details: '--json prints { "id", "assignedTo" } (null when unassigned).',
  options: { none: { type: "boolean", description: "remove the assignment" } },
  positionals: { min: 1, max: 2 },
  completes: ["id"],
  async run(ctx, args) {
    const [given, agent] = args.positionals as [string, string | undefined];
    const none = args.values.none === true;
    if (none === (agent !== undefined)) throw new UsageError("give either an agent or --none", "assign");
    const id = await withManager(ctx, async (manager) => {
      const id = resolveId(manager, given);
      await manager.assignAgent(id, { assignedTo: none ? null : (agent as string) });
      return id;
    });
    output(ctx, none ? `${id} is unassigned` : `${id} is assigned to ${escapeText(agent)}`, { id, assignedTo: none ? null : agent });
  },
};

export const rm: Command = {
  name: "rm",
  summary: "delete a task and all its descendants (asks first on a terminal)",
  usage: "rm <id> [--yes] [--dry-run]",
  details: `On a terminal (stdin and stderr) it asks y/N first; --yes does not ask; off a terminal it
does not ask. The store is backed up first when its driver can (taskstore restore undoes the rm).
--dry-run prints what would be removed and changes nothing.
--json prints { "removed": [ids], "backedUp": true|false } (with --dry-run: { "removed", "dryRun": true }).`,
  options: { ...GUARD_OPTIONS },
  positionals: { min: 1, max: 1 },
  completes: ["id"],
  async run(ctx, args) {
    const dryRun = isDryRun(args);
    const { removed, backup } = await withManager(ctx, async (manager, store) => {
      const id = resolveId(manager, args.positionals[0] as string);
      const task = manager.findById(id);
      if (!task) throw new TaskNotFoundError(id);
      const doomed = [id, ...descendantsOf(manager.list(), id).map(idOf)];
      if (dryRun) return { removed: doomed, backup: undefined };
      const under = doomed.length - 1;
      const title = escapeText(typeof task.title === "string" ? task.title : "(no title)");
      await confirm(
        ctx,
        args,
        `remove ${escapeText(id)} "${title}"${under > 0 ? ` and the ${under} ${under === 1 ? "task" : "tasks"} under it` : ""}?`,
      );
      const backup = await backupFirst(store);
      let ids: string[] = doomed;
      const off = manager.eventBus.on("task:deleted", (event) => {
        ids = event.ids;
      });
      await manager.delete(id);
      off();
      return { removed: ids, backup };
    });
    const list = `${removed.length} ${removed.length === 1 ? "task" : "tasks"}: ${removed.join(", ")}`;
    if (backup === undefined) output(ctx, `would remove ${list} (dry run: nothing was changed)`, { removed, dryRun: true });
    else output(ctx, `removed ${list}${backupNote(backup)}`, { removed, backedUp: backup !== false });
  },
};
