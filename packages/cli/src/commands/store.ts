import { readFile } from "node:fs/promises";
import path from "node:path";
import { isLegacyData, migrateLegacy, redactText, UnsupportedError } from "@taskstore/core";
import { type Command, output, stringArg, withStore } from "../command.js";
import { confirm, GUARD_OPTIONS, isDryRun } from "../confirm.js";
import { progressBar } from "../progress.js";
import { formatTime } from "../render.js";
import { escapeText } from "../text.js";
import { UsageError } from "../usage-error.js";

export const backup: Command = {
  name: "backup",
  summary: "make a restorable copy of the store",
  usage: "backup",
  details:
    'Where the copy goes is the driver\'s choice (json-file: tasks.backup.json beside the store). --json prints { "backedUpAt", "location" }.',
  options: {},
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const result = await withStore(ctx, async (store) => {
      await store.repository.backup();
      const description = await store.driver.describe?.();
      const location = typeof description?.backupLocation === "string" ? description.backupLocation : undefined;
      return { backedUpAt: Date.now(), ...(location ? { location: redactText(location) } : {}), store: store.display };
    });
    output(ctx, escapeText(`backed up ${result.store}${result.location ? ` to ${result.location}` : ""}`), result);
  },
};

export const reseal: Command = {
  name: "reseal",
  summary: "write every task again with the keys and compression now configured (after a key rotation)",
  usage: "reseal",
  details: `Encryption keys come from TASKSTORE_KEY_FILE (one base64 key of 32 bytes per line, newest
first: the first seals, all of them open) or TASKSTORE_KEY; TASKSTORE_COMPRESS=1 compresses large
values. To rotate: put a new key first in the key file, run reseal, then drop the old key. One
atomic write of the whole store: a reseal that is interrupted leaves it as it was. A store
sealed with a key that is not given is exit 15 and is never written. --json prints { "tasks" }.`,
  options: {},
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const result = await withStore(ctx, (store) => store.repository.reseal(), { writes: true });
    output(ctx, `resealed ${result.tasks} task(s)`, result);
  },
};

export const restore: Command = {
  name: "restore",
  summary: "put the last backup in place of the store (the current store is moved aside, never deleted)",
  usage: "restore [--yes] [--dry-run]",
  details: `Needs a driver that can restore (exit 11 otherwise); no usable backup is exit 6 and leaves the store as it was.
On a terminal it asks y/N first; --yes does not ask; off a terminal it does not ask. It makes no
backup first (that would replace the very backup it restores): the driver moves the current store
aside instead. --dry-run says which backup would be restored and changes nothing.
--json prints { "restoredFrom", "movedTo" } (with --dry-run: { "dryRun": true, "backup"?, "lastBackupAt"? }).`,
  options: { ...GUARD_OPTIONS },
  positionals: { min: 0, max: 0 },
  async run(ctx, args) {
    const result = await withStore(ctx, async (store) => {
      const capabilities = await store.repository.capabilities();
      if (!capabilities.restore) throw new UnsupportedError(`${store.display}: this driver cannot restore a backup`);
      const description = await store.driver.describe?.().catch(() => undefined);
      const location = typeof description?.backupLocation === "string" ? redactText(description.backupLocation) : undefined;
      const at = description?.lastBackupAt;
      const which = `${location ? ` (${location}` : ""}${at !== undefined ? `${location ? ", " : " ("}made ${formatTime(at)}` : ""}${location || at !== undefined ? ")" : ""}`;
      if (isDryRun(args)) return { dryRun: true as const, store: store.display, which, location, at };
      await confirm(ctx, args, escapeText(`replace ${store.display} with its last backup${which}? The current store is moved aside.`));
      return { dryRun: false as const, restored: await store.repository.restore() };
    });
    if (result.dryRun) {
      output(ctx, escapeText(`would restore ${result.store} from its last backup${result.which} (dry run: nothing was changed)`), {
        dryRun: true,
        ...(result.location ? { backup: result.location } : {}),
        ...(result.at !== undefined ? { lastBackupAt: result.at } : {}),
      });
      return;
    }
    const restored = result.restored;
    const aside = restored.movedTo ? `; the replaced store is kept as ${restored.movedTo}` : "";
    output(ctx, escapeText(`restored from ${redactText(restored.restoredFrom)}${aside}`), restored);
  },
};

/** Todos per atomic write of `migrate --from`: a live progress bar, and an interrupted import a second run completes. */
const IMPORT_BATCH = 200;

export const migrate: Command = {
  name: "migrate",
  summary: "convert a legacy todo store ([{ text, completed }]) in place, or import a legacy file (--from)",
  usage: "migrate [--from LEGACY.json]",
  details: `Without --from: converts the store itself when it is in the legacy format (the original is kept
as a backup; json-file also keeps tasks.legacy.json). A store already current is left alone.
With --from: adds the legacy file's todos to the store as new tasks, in atomic batches of 200 with
a progress bar on stderr when it is a terminal; the file is not changed. Each task records which
todo of which file it is (metadata.legacy), so running the same import again (after an
interrupted one) adds only the todos not imported yet.
Completed todos become completed tasks at 100%, the others pending at 0%.
--json prints { "migrated": N, "from"?, "skipped"? }.`,
  options: { from: { type: "string", value: "FILE", description: "a legacy todo file to import" } },
  positionals: { min: 0, max: 0 },
  async run(ctx, args) {
    const from = stringArg(args, "from");
    if (from === undefined) {
      const { migrated } = await withStore(ctx, (store) => store.repository.migrateFromLegacy());
      output(ctx, migrated === 0 ? "the store is not in the legacy format: nothing to migrate" : `migrated ${migrated} legacy todos`, {
        migrated,
      });
      return;
    }
    const file = path.resolve(from);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      throw new UsageError(`cannot read ${file}: ${(error as Error).message}`, "migrate");
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (error) {
      throw new UsageError(`${file} is not JSON: ${(error as Error).message}`, "migrate");
    }
    if (!isLegacyData(data)) throw new UsageError(`${file} is not a legacy todo file (a JSON array of { "text", "completed" })`, "migrate");
    const { tasks } = migrateLegacy(data);
    // Each task says which todo of which file it came from: a second run (after an interrupted
    // one, say) adds only the todos not imported yet, so it never duplicates any.
    for (const task of tasks) (task.metadata.legacy as Record<string, unknown>).from = file;
    const { imported, skipped } = await withStore(
      ctx,
      async (store) => {
        const before = new Set<number>();
        for (const task of await store.repository.loadAll()) {
          const legacy = (task.metadata as { legacy?: { from?: unknown; index?: unknown } } | undefined)?.legacy;
          if (legacy?.from === file && typeof legacy.index === "number") before.add(legacy.index);
        }
        const todo = tasks.filter((task) => !before.has((task.metadata.legacy as { index: number }).index));
        const bar = progressBar(ctx, "migrate", todo.length, "todos");
        try {
          for (let i = 0; i < todo.length; i += IMPORT_BATCH) {
            await store.repository.saveMany(todo.slice(i, i + IMPORT_BATCH));
            bar.tick(Math.min(todo.length, i + IMPORT_BATCH));
          }
        } finally {
          bar.done();
        }
        return { imported: todo.length, skipped: tasks.length - todo.length };
      },
      { writes: true },
    );
    const again = skipped > 0 ? `; ${skipped} imported before were left as they are` : "";
    output(ctx, escapeText(`imported ${imported} legacy todos from ${file}${again}`), {
      migrated: imported,
      from: file,
      ...(skipped > 0 ? { skipped } : {}),
    });
  },
};
