import path from "node:path";
import { EventBus, type StorageData, type StoredTask, type TaskHead, TaskManager, TaskRepository } from "@taskstore/core";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { SQLiteStorageDriver } from "../src/index.js";
import { tempDir } from "./helpers.js";

let cleanup: (() => void) | undefined;
afterEach(() => cleanup?.());

function store(): string {
  const { dir, remove } = tempDir();
  cleanup = remove;
  return path.join(dir, "tasks.db");
}

/** Well-formed strings that a careless encoding step would alter: NUL, astral, noncharacters, marks, BOM, separators. */
const EDGE: readonly string[] = [
  "nul \u0000 inside",
  "\u0000",
  "ends with nul\u0000",
  "astral 𝄞 😀 𐍈 \u{10FFFF}",
  "noncharacters \uFFFF \uFFFE \u{1FFFF}",
  "combining e\u0301 a\u0308 Z\u0351\u0352\u0353",
  "\uFEFFleading byte order mark",
  "trailing byte order mark\uFEFF",
  "separators\u2028line\u2029paragraph\u0085next",
  "controls \r\n\t\u001b[2J\u0007\u007f",
  "bidi \u202Eoverride\u202C and \u200Dzero width\u200B",
  "replacement \uFFFD character",
  'quote " backslash \\ slash / brace { }',
];

function task(id: string, title: string, output: string, extra: Partial<StoredTask> = {}): StoredTask {
  return {
    id,
    title,
    status: "pending",
    progress: { percent: 0 },
    metadata: {},
    createdAt: 1,
    updatedAt: 1,
    children: [],
    logs: [{ timestamp: 1, output, type: "log" }],
    ...extra,
  } as StoredTask;
}

const data = (tasks: StoredTask[]): StorageData => ({ version: "1.0.0", tasks, metadata: { lastUpdated: 1, totalTasks: tasks.length } });

describe("text is stored exactly", () => {
  it("edge-case well-formed strings (NUL, astral, U+FFFF, combining marks, BOM...) round-trip through TaskManager in titles, descriptions, log output and source, metadata keys and values", async () => {
    const file = store();
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: file }) }));
    await manager.loadFromRepository();
    const ids: string[] = [];
    for (const text of EDGE) {
      const id = await manager.create({
        title: `title ${text}`,
        description: text,
        metadata: { [text]: text, nested: { [`k ${text}`]: [text] } },
      });
      await manager.appendOutput(id, text, "stdout", `source ${text}`);
      await manager.appendOutput(id, `second ${text}`);
      ids.push(id);
    }
    await manager.close();

    const again = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: file }) }));
    await again.loadFromRepository();
    EDGE.forEach((text, i) => {
      const loaded = again.findById(ids[i] as string);
      expect(loaded?.title).toBe(`title ${text}`);
      expect(loaded?.description).toBe(text);
      expect(loaded?.metadata).toEqual({ [text]: text, nested: { [`k ${text}`]: [text] } });
      expect(loaded?.logs.map((entry) => [entry.output, entry.source])).toEqual([
        [text, `source ${text}`],
        [`second ${text}`, undefined],
      ]);
    });
    await again.close();
    // In the log table the text is the text, not an escaped or re-encoded form of it.
    const raw = new Database(file, { readonly: true });
    expect(raw.prepare("SELECT output FROM task_logs WHERE task_id = ? AND n = 0").pluck().get(ids[0])).toBe(EDGE[0]);
    raw.close();
  });

  it("saveData() and transact() keep the same strings, and strings of 1 MiB, exactly", async () => {
    const file = store();
    const driver = new SQLiteStorageDriver({ path: file });
    const long = "𝄞\u0000é\uFFFF\uFEFFx".repeat(180_000); // over 1 MiB of UTF-16, multibyte in UTF-8
    const tasks = EDGE.map((text, i) =>
      task(`t${i}`, text, text, {
        description: text,
        metadata: { [text]: [text] },
        logs: [{ timestamp: i, output: text, type: "stderr", source: text }],
      }),
    );
    tasks.push(task("long", long, long, { description: long }));
    await driver.saveData(data(tasks));
    const appended = { timestamp: 9, output: long, type: "log" as const, source: EDGE[0] };
    await driver.transact(async (reader) => {
      const { logCount: _count, ...head } = (await reader.get("t0")) as TaskHead;
      return {
        puts: [{ ...head, title: long }],
        logs: [{ id: "t0", entries: [appended], keep: 1_000, replace: false }],
        deletes: [],
      };
    });
    await driver.close();

    const reopened = new SQLiteStorageDriver({ path: file });
    const loaded = await reopened.loadData();
    await reopened.close();
    const byId = new Map(loaded.tasks.map((t) => [t.id, t]));
    EDGE.forEach((text, i) => {
      const t = byId.get(`t${i}`);
      if (i > 0) expect(t?.title).toBe(text);
      expect(t?.description).toBe(text);
      expect(t?.metadata).toEqual({ [text]: [text] });
      expect(t?.logs[0]).toEqual({ timestamp: i, output: text, type: "stderr", source: text });
    });
    expect(byId.get("t0")?.title).toBe(long);
    expect(byId.get("t0")?.logs[1]).toEqual(appended);
    expect(byId.get("long")).toMatchObject({ title: long, description: long, logs: [{ output: long }] });
  });

  it("a lone surrogate given to saveData() or transact() directly is never altered: refused with VALIDATION where SQLite's UTF-8 would replace it (log text, ids), kept exactly in the JSON columns, and nothing is written", async () => {
    const file = store();
    const driver = new SQLiteStorageDriver({ path: file });
    const before = data([task("a", "kept", "kept")]);
    await driver.saveData(before);

    for (const [where, bad] of [
      ["tasks.b.logs.0.output", task("b", "b", "cut \ud83d here")],
      ["tasks.b.logs.0.source", task("b", "b", "x", { logs: [{ timestamp: 1, output: "x", type: "log", source: "\udc00" }] })],
      ["tasks.b\ud800.id", task("b\ud800", "b", "x")],
    ] as const) {
      await expect(driver.saveData(data([bad]))).rejects.toMatchObject({
        code: "VALIDATION",
        message: expect.stringContaining("lone surrogate"),
        issues: [
          {
            rule: "well_formed",
            path: where.split(".").map((part) => (/^\d+$/.test(part) ? Number(part) : part)),
            message: expect.any(String),
          },
        ],
      });
      expect((await driver.loadData()).tasks).toEqual(before.tasks);
    }
    await expect(
      driver.transact(async () => ({
        puts: [],
        logs: [{ id: "a", entries: [{ timestamp: 2, output: "x\udbffy", type: "log" }], keep: 1_000, replace: false }],
        deletes: [],
      })),
    ).rejects.toMatchObject({ code: "VALIDATION", message: expect.stringContaining("lone surrogate") });
    expect((await driver.loadData()).tasks).toEqual(before.tasks);

    // The task's fields live in a JSON column, where JSON.stringify writes "\ud800" as an escape: exact.
    const lone = "lone \ud800 and \udfff";
    await driver.saveData(data([task("c", lone, "ok", { metadata: { [lone]: lone } })]));
    const [c] = (await driver.loadData()).tasks;
    expect(c?.title).toBe(lone);
    expect(c?.metadata).toEqual({ [lone]: lone });
    await driver.close();
  });
});
