import path from "node:path";
import { runWorkload } from "@taskstore/conformance";
import type { StoredTask } from "@taskstore/core";
import Database from "better-sqlite3";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { SQLiteStorageDriver } from "../src/index.js";
import { buildPackage, exited, startFixture, tempDir } from "./helpers.js";

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
    const { reports, tasks, problems } = await runWorkload({
      driver: { module: import.meta.resolve("@taskstore/driver-sqlite"), export: "SQLiteStorageDriver", args: [{ path: file }] },
      processes: 4,
      operations: 250,
      concurrency: 10,
    });
    // Includes every persistence:error a worker saw: SQLITE_BUSY would surface there as LOCK_TIMEOUT.
    expect(problems).toEqual([]);
    expect(reports).toHaveLength(4);
    expect(tasks.length).toBeGreaterThan(4 * 20);
    const raw = new Database(file);
    expect(raw.pragma("integrity_check", { simple: true })).toBe("ok");
    raw.close();
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
