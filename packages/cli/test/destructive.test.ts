import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, inTerminal, json, makeHome, ok, run, shellLine } from "./helpers.js";

interface Listed {
  tasks: { id: string; title: string }[];
}

// rm, restore and copy --force: asked on a terminal (a real pseudo-terminal from util-linux
// `script`), --yes, --dry-run, and a backup first wherever the driver can make one.
describe("destructive verbs confirm, dry-run and back up first", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  let opts: { env: NodeJS.ProcessEnv };
  beforeAll(async () => {
    home = await makeHome();
    opts = { env: home.env };
  });
  afterAll(() => home.cleanup());

  /** A store (file: or sqlite:) with a parent, its child, and another task. */
  async function seeded(name: string, scheme = "file") {
    const dir = path.join(home.dir, name);
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, scheme === "file" ? "tasks.json" : "tasks.db");
    const url = `${scheme}:${file}`;
    const ts = (...args: string[]) => ["--store", url, ...args];
    const { id: parent } = await json<{ id: string }>(ts("add", "Parent"), opts);
    const { id: child } = await json<{ id: string }>(ts("add", "Child", "--parent", parent), opts);
    const { id: other } = await json<{ id: string }>(ts("add", "Other"), opts);
    return { dir, file, url, ts, parent, child, other };
  }
  const idsIn = async (ts: (...args: string[]) => string[]) => (await json<Listed>(ts("list", "--all"), opts)).tasks.map((t) => t.id);
  const terminal = (args: string[], input: string) => inTerminal(`${shellLine([process.execPath, BIN, ...args])}`, opts.env, { input });

  it("rm on a terminal asks y/N: n changes nothing (exit 14), y removes the task and its descendants", async () => {
    const s = await seeded("rm-tty");
    const before = await readFile(s.file, "utf8");
    const no = await terminal(s.ts("rm", s.parent), "n\n");
    expect(no.code).toBe(14);
    expect(no.output).toContain(`taskstore: remove ${s.parent} "Parent" and the 1 task under it? [y/N] `);
    expect(no.output).toContain("taskstore: not confirmed: nothing was changed");
    expect(await readFile(s.file, "utf8")).toBe(before);
    const yes = await terminal(s.ts("rm", s.parent), "y\n");
    expect(yes.code).toBe(0);
    expect(yes.output).toMatch(/removed 2 tasks: .*\(backed up first to .*tasks\.backup\.json\)/);
    expect(await idsIn(s.ts)).toEqual([s.other]);
  });

  it("rm --yes on a terminal does not ask; off a terminal rm does not ask either (scripts work as before)", async () => {
    const s = await seeded("rm-yes");
    const yes = await terminal(s.ts("rm", s.child, "--yes"), "n\n"); // the n is never read
    expect(yes.code).toBe(0);
    expect(yes.output).not.toContain("[y/N]");
    const piped = await run(s.ts("rm", s.other), opts);
    expect(piped.code).toBe(0);
    expect(piped.stderr).toBe("");
    expect(await idsIn(s.ts)).toEqual([s.parent]);
  });

  it("rm --dry-run lists what would go and writes nothing, even on a terminal (no question)", async () => {
    const s = await seeded("rm-dry");
    const backupFile = path.join(s.dir, "tasks.backup.json");
    const before = await readFile(s.file, "utf8");
    const backupBefore = await readFile(backupFile, "utf8").catch(() => "(none)");
    const dry = await json<{ removed: string[]; dryRun: boolean }>(s.ts("rm", s.parent, "--dry-run"), opts);
    expect(dry).toEqual({ removed: [s.parent, s.child], dryRun: true });
    const tty = await terminal(s.ts("rm", s.parent, "--dry-run"), "n\n");
    expect(tty.code).toBe(0);
    expect(tty.output).toContain(`would remove 2 tasks: ${s.parent}, ${s.child} (dry run: nothing was changed)`);
    expect(await readFile(s.file, "utf8")).toBe(before);
    expect(await readFile(backupFile, "utf8").catch(() => "(none)")).toBe(backupBefore);
  });

  for (const scheme of ["file", "sqlite"]) {
    it(`rm backs a ${scheme}: store up first, so restore brings the removed tasks back`, async () => {
      const s = await seeded(`rm-backup-${scheme}`, scheme);
      const removed = await json<{ removed: string[]; backedUp: boolean }>(s.ts("rm", s.parent), opts);
      expect(removed.backedUp).toBe(true);
      expect(await idsIn(s.ts)).toEqual([s.other]);
      await ok(s.ts("restore", "--yes"), opts);
      expect((await idsIn(s.ts)).sort()).toEqual([s.parent, s.child, s.other].sort());
    });
  }

  it("restore on a terminal asks (naming the backup); --dry-run says which backup and changes nothing", async () => {
    const s = await seeded("restore");
    await ok(s.ts("backup"), opts);
    const { id: late } = await json<{ id: string }>(s.ts("add", "after the backup"), opts);
    const before = await readFile(s.file, "utf8");
    const dry = await json<{ dryRun: boolean; backup: string; lastBackupAt: number }>(s.ts("restore", "--dry-run"), opts);
    expect(dry).toEqual({ dryRun: true, backup: path.join(s.dir, "tasks.backup.json"), lastBackupAt: expect.any(Number) });
    const no = await terminal(s.ts("restore"), "\n");
    expect(no.code).toBe(14);
    expect(no.output).toMatch(
      /taskstore: replace file:.*tasks\.json with its last backup \(.*tasks\.backup\.json, made 20\d\d-.*\)\? The current store is moved aside\. \[y\/N\] /,
    );
    expect(await readFile(s.file, "utf8")).toBe(before);
    const yes = await terminal(s.ts("restore"), "yes\n");
    expect(yes.code).toBe(0);
    expect(await idsIn(s.ts)).not.toContain(late);
  });

  it("copy --force on a terminal asks; it backs the target up first (restore undoes it); --dry-run changes nothing", async () => {
    const from = await seeded("copy-from");
    const to = await seeded("copy-to");
    const targetBefore = await readFile(to.file, "utf8");
    const dry = await json<Record<string, unknown>>(["copy", "--from", from.url, "--to", to.url, "--force", "--dry-run"], opts);
    expect(dry).toMatchObject({ tasks: 3, replaced: 3, mode: "replace", dryRun: true });
    const no = await terminal(["copy", "--from", from.url, "--to", to.url, "--force"], "n\n");
    expect(no.code).toBe(14);
    expect(no.output).toContain(`taskstore: replace the 3 tasks of ${to.url} with the 3 tasks of ${from.url}? [y/N] `);
    expect(await readFile(to.file, "utf8")).toBe(targetBefore);
    const yes = await terminal(["copy", "--from", from.url, "--to", to.url, "--force"], "y\n");
    expect(yes.code).toBe(0);
    expect(yes.output).toMatch(/copied 3 tasks .*, replacing its 3 tasks \(backed up first to .*copy-to.*tasks\.backup\.json\)/);
    expect((await idsIn(to.ts)).sort()).toEqual([from.parent, from.child, from.other].sort());
    await ok(to.ts("restore"), opts);
    expect((await idsIn(to.ts)).sort()).toEqual([to.parent, to.child, to.other].sort());
  });
});
