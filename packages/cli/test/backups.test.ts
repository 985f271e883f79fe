import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { BIN, inTerminal, json, makeHome, ok, PACKAGE_DIR, run, shellLine } from "./helpers.js";

interface Point {
  id: string;
  kind: "base" | "delta";
  tasks: number;
  changed: number;
  removed: number;
  bytes: number;
  note?: string;
}

// HOME and XDG_CONFIG_HOME of the binary: a folder of this file's own.
const home = await makeHome();
const opts = { env: home.env };
afterAll(() => home.cleanup());

describe("incremental backups: backup --incremental, backups, restore --point", () => {
  /** A store in a folder of its own: `tasks.json` (file:) or `tasks.db` (sqlite:). */
  async function store(name: string, base = "tasks.json") {
    const file = path.join(home.dir, name, base);
    await mkdir(path.dirname(file), { recursive: true });
    const url = `${base.endsWith(".db") ? "sqlite" : "file"}:${file}`;
    return { dir: path.dirname(file), file, ts: (...args: string[]) => ["--store", url, ...args] };
  }
  const titles = async (ts: (...args: string[]) => string[], env = opts.env) =>
    (await json<{ tasks: { title: string }[] }>(ts("list", "--all"), { env })).tasks.map((task) => task.title).sort();

  it("points go to tasks.backups/ beside the store, hold only what changed, and restore --point puts one back", async () => {
    const s = await store("basic");
    const { id } = await json<{ id: string }>(s.ts("add", "first"), opts);
    const base = await json<{ point: Point; written: boolean; dir: string }>(s.ts("backup", "--incremental"), opts);
    expect(base).toMatchObject({ written: true, point: { kind: "base", tasks: 1 }, dir: path.join(s.dir, "tasks.backups") });
    await ok(s.ts("log", id, "a line"), opts);
    await ok(s.ts("add", "second"), opts);
    const delta = await json<{ point: Point }>(s.ts("backup", "--incremental"), opts);
    expect(delta.point).toMatchObject({ kind: "delta", tasks: 2, changed: 2, removed: 0 });
    expect(await ok(s.ts("backup", "--incremental"), opts)).toMatch(/^nothing changed in file:.* since point \S+: no new point/);
    const listed = await ok(s.ts("backups"), opts);
    expect(listed).toMatch(/^backup points in .*tasks\.backups:\npoint +kind +made +tasks +changed +removed +size\n/);
    expect(listed).toContain(base.point.id);
    expect(listed).toContain(delta.point.id);

    await ok(s.ts("rm", id), opts);
    const dry = await json<{ dryRun: boolean; tasks: number }>(s.ts("restore", "--point", base.point.id, "--dry-run"), opts);
    expect(dry).toMatchObject({ dryRun: true, tasks: 1 });
    expect(await titles(s.ts)).toEqual(["second"]);
    // A prefix will do; off a terminal it does not ask.
    const restored = await json<{ point: Point; tasks: number; keptAs: Point }>(
      s.ts("restore", "--point", base.point.id.slice(0, 16)),
      opts,
    );
    expect(restored).toMatchObject({ point: { id: base.point.id }, tasks: 1, keptAs: { note: `before restoring ${base.point.id}` } });
    expect(await titles(s.ts)).toEqual(["first"]);
    await ok(s.ts("restore", "--point", restored.keptAs.id), opts);
    expect(await titles(s.ts)).toEqual(["second"]);
  });

  it("restore --point on a terminal asks y/N first: n changes nothing (exit 14)", async () => {
    const s = await store("tty");
    await ok(s.ts("add", "kept"), opts);
    const { point } = await json<{ point: Point }>(s.ts("backup", "--incremental"), opts);
    await ok(s.ts("add", "later"), opts);
    const before = await readFile(s.file, "utf8");
    const no = await inTerminal(shellLine([process.execPath, BIN, ...s.ts("restore", "--point", point.id)]), opts.env, { input: "n\n" });
    expect(no.code).toBe(14);
    expect(no.output).toContain(`replace file:${s.file} with backup point ${point.id} (base, 1 task(s)`);
    expect(await readFile(s.file, "utf8")).toBe(before);
  });

  it("--keep prunes the oldest points, and backups --prune folds what they held into a base", async () => {
    const s = await store("keep");
    const { id } = await json<{ id: string }>(s.ts("add", "t"), opts);
    let pruned = 0;
    for (let i = 0; i < 5; i++) {
      await ok(s.ts("log", id, `line ${i}`), opts);
      pruned += (await json<{ pruned: string[] }>(s.ts("backup", "--incremental", "--keep", "2"), opts)).pruned.length;
    }
    expect(pruned).toBe(3);
    expect((await json<{ points: Point[] }>(s.ts("backups"), opts)).points).toHaveLength(2);
    const folded = await json<{ points: Point[]; pruned: string[] }>(s.ts("backups", "--prune", "--keep", "2"), opts);
    expect(folded.points.map((point) => point.kind)).toEqual(["base", "delta"]);
    const chain = path.join(s.dir, "tasks.backups");
    expect((await readdir(chain)).filter((name) => !name.startsWith("manifest-"))).toHaveLength(2);
  });

  it("a damaged point is exit 6 naming it, an unknown one exit 3, stray options exit 2, and nothing is written", async () => {
    const s = await store("damaged");
    const { id } = await json<{ id: string }>(s.ts("add", "t"), opts);
    await ok(s.ts("backup", "--incremental"), opts);
    await ok(s.ts("log", id, "x"), opts);
    const { point } = await json<{ point: Point & { file: string } }>(
      s.ts("backup", "--incremental", "--to", path.join(s.dir, "tasks.backups")),
      opts,
    );
    const file = path.join(s.dir, "tasks.backups", point.file);
    await writeFile(file, (await readFile(file, "utf8")).replace('"x"', '"y"'));
    await ok(s.ts("add", "after"), opts);
    const before = await readFile(s.file, "utf8");
    const damaged = await run(s.ts("restore", "--point", point.id), opts);
    expect(damaged.code).toBe(6);
    expect(damaged.stderr).toContain(`backup point ${point.id}`);
    expect((await run(s.ts("restore", "--point", "20000101T000000000Z-0000"), opts)).code).toBe(3);
    expect((await run(s.ts("backup", "--keep", "3"), opts)).stderr).toContain("--keep goes with --incremental");
    expect((await run(s.ts("backup", "--incremental", "--keep", "0"), opts)).code).toBe(2);
    expect((await run(s.ts("restore", "--to", "x"), opts)).code).toBe(2);
    expect(await readFile(s.file, "utf8")).toBe(before);
  });

  it("a sealed store's points hold no plaintext, and restore --point without the key is exit 15", async () => {
    const s = await store("sealed");
    const env = { ...opts.env, TASKSTORE_KEY: randomBytes(32).toString("base64") };
    await ok(s.ts("add", "secret-title-canary"), { env });
    await ok(s.ts("backup", "--incremental"), { env });
    await ok(s.ts("add", "another-secret-canary"), { env });
    const { point } = await json<{ point: Point }>(s.ts("backup", "--incremental"), { env });
    const chain = path.join(s.dir, "tasks.backups");
    for (const name of await readdir(chain)) expect(await readFile(path.join(chain, name), "utf8")).not.toContain("canary");
    expect((await run(s.ts("restore", "--point", point.id), opts)).code).toBe(15);
    await ok(s.ts("restore", "--point", point.id), { env });
    expect(await titles(s.ts, env)).toEqual(["another-secret-canary", "secret-title-canary"]);
  });

  it("a SQLite store's chain is tasks.db.backups beside it; a server store's under XDG_CONFIG_HOME/kilocode/backups", async () => {
    const s = await store("sqlite", "tasks.db");
    await ok(s.ts("add", "t"), opts);
    expect((await json<{ dir: string }>(s.ts("backup", "--incremental"), opts)).dir).toBe(path.join(s.dir, "tasks.db.backups"));
    const built = pathToFileURL(path.join(PACKAGE_DIR, "dist", "commands", "backups.js")).href;
    const { chainDir } = (await import(built)) as typeof import("../src/commands/backups.js");
    const dir = chainDir(
      { env: { XDG_CONFIG_HOME: "/x/config" } } as never,
      { spec: { kind: "redis", options: {} }, display: "redis://127.0.0.1:6379/0" } as never,
      { values: {}, positionals: [] },
    );
    expect(dir).toMatch(/^\/x\/config\/kilocode\/backups\/redis-[0-9a-f]{12}$/);
  });
});
