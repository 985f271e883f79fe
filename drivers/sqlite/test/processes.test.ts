import path from "node:path";
import { EventBus, type StoredTask, TaskManager, TaskRepository } from "@taskstore/core";
import Database from "better-sqlite3";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { SQLiteStorageDriver } from "../src/index.js";
import { buildPackage, exited, runFixture, startFixture, tempDir } from "./helpers.js";

beforeAll(buildPackage);

let cleanup: (() => void) | undefined;
afterEach(() => cleanup?.());

async function loadTasks(file: string): Promise<Map<string, StoredTask>> {
  const driver = new SQLiteStorageDriver({ path: file });
  await driver.initialize();
  const data = await driver.loadData();
  await driver.close();
  return new Map(data.tasks.map((task) => [task.id, task]));
}

describe("several processes on one database file", () => {
  it("four processes doing 250 mixed operations each lose nothing and never see SQLITE_BUSY", async () => {
    const { dir, remove } = tempDir();
    cleanup = remove;
    const file = path.join(dir, "tasks.db");
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new SQLiteStorageDriver({ path: file }) }));
    await manager.loadFromRepository();
    const sharedId = await manager.create({ title: "shared" });
    await manager.close();

    const outputs = await Promise.all(
      [1, 2, 3, 4].map((worker) => runFixture("mixed-worker.mjs", [file, String(worker), sharedId, "250"])),
    );
    const reports = outputs.map(
      (out) =>
        JSON.parse(out.trim()) as {
          expected: [string, { title: string; percent: number; outputs: string[] }][];
          deleted: string[];
          sharedOutputs: string[];
          errors: string[];
        },
    );

    const tasks = await loadTasks(file);
    for (const report of reports) {
      expect(report.errors).toEqual([]);
      for (const [id, want] of report.expected) {
        const task = tasks.get(id);
        expect(task, `task ${id}`).toBeDefined();
        expect(task?.title).toBe(want.title);
        expect(task?.progress.percent).toBe(want.percent);
        expect(task?.logs.map((entry) => entry.output)).toEqual(want.outputs);
      }
      for (const id of report.deleted) expect(tasks.has(id)).toBe(false);
    }
    const shared = tasks.get(sharedId) as StoredTask;
    const allShared = reports.flatMap((report) => report.sharedOutputs);
    expect(shared.logs).toHaveLength(allShared.length);
    expect(new Set(shared.logs.map((entry) => entry.output))).toEqual(new Set(allShared));
    const live = reports.flatMap((report) => report.expected.map(([id]) => id));
    expect(new Set(shared.children)).toEqual(new Set(live));
    expect(tasks.size).toBe(live.length + 1);
  });

  it("a writer killed with SIGKILL mid-run leaves a database that opens and holds every acknowledged change", async () => {
    const { dir, remove } = tempDir();
    cleanup = remove;
    const file = path.join(dir, "tasks.db");
    const created: string[] = [];
    const appended = new Map<string, string[]>();
    const errors: string[] = [];
    let acks = 0;
    let reached: () => void = () => undefined;
    const enough = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const child = startFixture("acked-writer.mjs", [file], (line) => {
      const [kind, id, ...rest] = line.split(" ");
      if (kind === "created") created.push(id as string);
      else if (kind === "appended") appended.set(id as string, rest);
      else errors.push(line);
      if (++acks === 300) reached();
    });
    await enough;
    child.kill("SIGKILL");
    await exited(child);

    expect(errors).toEqual([]);
    const raw = new Database(file);
    expect(raw.pragma("integrity_check", { simple: true })).toBe("ok");
    raw.close();
    const tasks = await loadTasks(file);
    expect(created.length).toBeGreaterThan(100);
    for (const id of created) expect(tasks.has(id), `created ${id}`).toBe(true);
    for (const [id, outputs] of appended) {
      expect(tasks.get(id)?.logs.map((entry) => entry.output)).toEqual(outputs);
    }
  });
});
