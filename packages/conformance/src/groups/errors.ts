import os from "node:os";
import {
  EventBus,
  type StorageDriver,
  StorageUnavailableError,
  type StoredError,
  TaskManager,
  type TaskRepository,
  type TaskRepositoryOptions,
} from "@taskstore/core";
import { expect, it } from "vitest";
import { runChild } from "../child-driver.js";
import { makeTask } from "../fixtures.js";
import type { Harness } from "../harness.js";
import { needProcesses } from "../waiting.js";

// Storage errors are recorded with the store (in `metadata.recentErrors`, which a driver keeps
// like any unknown metadata field), so `diagnose()` in every process sees every process's errors.
// Core does the work on every driver; these tests prove this driver keeps what core writes.

const SECRET = "pw-4b1d-never-stored";
const outage = (n: number) =>
  new StorageUnavailableError(`outage ${n}: cannot reach postgres://agent:${SECRET}@db.internal:5432/tasks?sslpassword=${SECRET}`);

/** A driver whose writes fail with STORAGE_UNAVAILABLE while `down` is set, as during an outage. */
class Outage {
  down = false;
  failures = 0;

  wrap(driver: StorageDriver): StorageDriver {
    return new Proxy(driver, {
      get: (target, key) => {
        const value = Reflect.get(target, key, target) as unknown;
        if (typeof value !== "function") return value;
        if ((key === "saveData" || key === "transact") && this.down) return async () => Promise.reject(outage(this.failures++));
        // Bound to the driver itself: a class's #private fields need the real `this`.
        return (value as (...args: unknown[]) => unknown).bind(target);
      },
    });
  }
}

async function repositoryWithOutage(h: Harness, options: Omit<TaskRepositoryOptions, "driver"> = {}) {
  const outage = new Outage();
  const repository = await h.repository({ retry: { initialDelayMs: 10, maxDelayMs: 50 }, ...options }, (driver) => outage.wrap(driver));
  return { outage, repository };
}

async function ourErrors(repository: TaskRepository): Promise<StoredError[]> {
  return (await repository.diagnose()).recentErrors.filter((error) => error.pid === process.pid);
}

export function storedErrorTests(h: Harness): void {
  it("an error met during an outage is written once storage is back, and another instance's diagnose() shows it", async () => {
    const { outage, repository } = await repositoryWithOutage(h);
    const manager = new TaskManager(new EventBus(), repository);
    await manager.loadFromRepository();
    outage.down = true;
    const id = await manager.create({ title: "made while storage was down" }); // degraded: in memory
    expect(repository.pendingChanges()).toHaveLength(1);
    outage.down = false;
    await manager.flush();

    const errors = await ourErrors(await h.repository());
    expect(errors.length).toBeGreaterThan(0);
    expect(errors[0]).toMatchObject({ code: "STORAGE_UNAVAILABLE", operation: "create", pid: process.pid, host: os.hostname() });
    expect(errors[0]?.message).toContain("postgres://agent:***@db.internal");
    expect(JSON.stringify(errors)).not.toContain(SECRET);
    expect((await (await h.repository()).loadById(id))?.title).toBe("made while storage was down");
  });

  it("a password in an error's message never reaches the backend", async (ctx) => {
    const readRaw = h.current.readRaw;
    if (!readRaw) ctx.skip("the harness cannot read the backend's raw bytes (setup() gave no readRaw())");
    const { outage, repository } = await repositoryWithOutage(h);
    outage.down = true;
    await expect(repository.save(makeTask({ id: "refused" }))).rejects.toThrow(SECRET);
    outage.down = false;
    await repository.save(makeTask({ id: "accepted" }));
    await repository.flush(); // the errors are written right after the write that succeeded
    expect(await ourErrors(await h.repository())).toHaveLength(1);
    const raw = Buffer.from((await readRaw?.call(h.current)) ?? "");
    expect(raw.includes("outage 0")).toBe(true);
    expect(raw.includes(SECRET)).toBe(false);
  });

  it("the store keeps the newest 50 errors, newest first, and other instances' writes keep them", async () => {
    const { outage, repository } = await repositoryWithOutage(h);
    outage.down = true;
    for (let i = 0; i < 60; i++) await expect(repository.save(makeTask({ id: `refused-${i}` }))).rejects.toThrow(`outage ${i}:`);
    outage.down = false;
    await repository.save(makeTask({ id: "accepted" }));
    await repository.flush(); // the errors are written right after the write that succeeded
    // Another instance writes through every path: a change set, a log append, a plain save.
    const manager = await h.manager();
    const id = await manager.create({ title: "written after the outage" });
    await manager.appendOutput(id, "a line");
    await (await h.repository()).save(makeTask({ id: "saved-after" }));

    const errors = await ourErrors(await h.repository());
    expect(errors).toHaveLength(50);
    expect(errors.map((error) => Number(/^outage (\d+):/.exec(error.message)?.[1]))).toEqual(Array.from({ length: 50 }, (_, i) => 59 - i));
    const raw = (await (await h.driver()).loadData()).metadata as Record<string, unknown>;
    expect(raw.recentErrors).toHaveLength(50);
  });

  it("with recordErrors: false nothing is written with the store", async () => {
    const { outage, repository } = await repositoryWithOutage(h, { recordErrors: false });
    outage.down = true;
    await expect(repository.save(makeTask({ id: "refused" }))).rejects.toThrow("outage 0");
    outage.down = false;
    await repository.save(makeTask({ id: "accepted" }));
    await repository.flush(); // the errors are written right after the write that succeeded
    await repository.close();
    expect(await ourErrors(await h.repository())).toEqual([]);
    expect(((await (await h.driver()).loadData()).metadata as Record<string, unknown>).recentErrors).toBeUndefined();
  });

  it("a child process's diagnose() lists the errors this process met", async (ctx) => {
    needProcesses(h, ctx);
    const { outage, repository } = await repositoryWithOutage(h);
    outage.down = true;
    await expect(repository.save(makeTask({ id: "refused" }))).rejects.toThrow("outage 0");
    outage.down = false;
    await repository.save(makeTask({ id: "accepted" }));
    await repository.flush(); // the errors are written right after the write that succeeded
    const seen = await runChild<StoredError[]>({ driver: h.child(), mode: "diagnose" });
    expect(seen.filter((error) => error.pid === process.pid)).toMatchObject([
      { code: "STORAGE_UNAVAILABLE", operation: "save", host: os.hostname() },
    ]);
  });
}
