import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { EventBus, TaskManager, TaskRepository } from "@taskstore/core";
import { RedisStorageDriver } from "@taskstore/driver-redis";
import { startRedis } from "@taskstore/test-services";
import { afterAll, describe, expect, it } from "vitest";
import { uniquePrefix } from "./helpers.js";

const run = promisify(execFile);
const server = await startRedis();
afterAll(() => server.stop());

interface WorkerReport {
  live: Record<string, { title: string; percent: number; status: string }>;
  deleted: string[];
  sharedLines: string[];
}

describe("RedisStorageDriver across processes", () => {
  it("four processes doing 100 mixed operations each on one store lose nothing", async () => {
    const prefix = uniquePrefix("procs");
    const open = () => new TaskManager(new EventBus(), new TaskRepository({ driver: new RedisStorageDriver({ url: server.url, prefix }) }));
    const setup = open();
    await setup.loadFromRepository();
    const sharedId = await setup.create({ title: "shared" });
    await setup.close();

    const worker = join(import.meta.dirname, "fixtures/worker.mjs");
    const outputs = await Promise.all(
      [0, 1, 2, 3].map((n) => run(process.execPath, [worker, server.url, prefix, String(n), "100", sharedId], { timeout: 120_000 })),
    );
    const reports = outputs.map((output) => JSON.parse(output.stdout) as WorkerReport);

    const check = open();
    await check.loadFromRepository();
    const shared = check.findById(sharedId);
    const sharedOutput = new Set(shared?.logs.map((entry) => entry.output));
    for (const report of reports) {
      for (const line of report.sharedLines) expect(sharedOutput.has(line), line).toBe(true);
      for (const [id, expected] of Object.entries(report.live)) {
        const task = check.findById(id);
        expect(task, id).toBeDefined();
        expect({ title: task?.title, percent: task?.progress.percent, status: task?.status }).toEqual(expected);
      }
      for (const id of report.deleted) expect(check.findById(id), id).toBeUndefined();
    }
    const expectedLines = reports.reduce((sum, report) => sum + report.sharedLines.length, 0);
    expect(shared?.logs).toHaveLength(expectedLines);
    // Every live child created under the shared task is in its children, none of the deleted ones.
    const children = new Set(shared?.children);
    for (const task of check.list({ parentId: sharedId })) expect(children.has(task.id)).toBe(true);
    for (const report of reports) for (const id of report.deleted) expect(children.has(id)).toBe(false);
    await check.close();
  });
});
