import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { EventBus, MemoryStorageDriver, TaskManager, TaskRepository, TaskStoreError } from "@taskstore/core";
import { describe, expect, it, vi } from "vitest";

const run = promisify(execFile);

describe("EventBus", () => {
  it("delivers typed payloads to listeners until they are removed, and once() only once", () => {
    const bus = new EventBus();
    const seen: string[] = [];
    const off = bus.on("task:deleted", (event) => seen.push(`on:${event.id}`));
    bus.once("task:deleted", (event) => seen.push(`once:${event.id}`));
    bus.emit("task:deleted", { id: "a", ids: ["a"] });
    off();
    bus.emit("task:deleted", { id: "b", ids: ["b"] });
    expect(seen).toEqual(["on:a", "once:a"]);
  });

  it("a listener that throws does not break the operation that emitted the event", async () => {
    const warning = vi.spyOn(process, "emitWarning").mockImplementation(() => undefined);
    const bus = new EventBus();
    bus.on("task:created", () => {
      throw new Error("listener bug");
    });
    const manager = new TaskManager(bus, new TaskRepository({ driver: new MemoryStorageDriver() }));
    await manager.loadFromRepository();
    const id = await manager.create({ title: "still created" });
    expect(manager.findById(id)?.title).toBe("still created");
    expect(warning).toHaveBeenCalledWith(expect.stringContaining("listener bug"));
    warning.mockRestore();
    await manager.close();
  });

  it("TaskManager emits created, status, progress, output, updated and deleted events with the task", async () => {
    const bus = new EventBus();
    const events: string[] = [];
    for (const name of ["task:created", "task:status", "task:progress", "task:output", "task:updated", "task:deleted"] as const) {
      bus.on(name, (payload) => events.push(`${name}:${"task" in payload ? payload.task.title : payload.id}`));
    }
    const manager = new TaskManager(bus, new TaskRepository({ driver: new MemoryStorageDriver() }));
    await manager.loadFromRepository();
    const id = await manager.create({ title: "t" });
    await manager.start(id);
    await manager.setProgress(id, { percent: 5 });
    await manager.appendOutput(id, "x");
    await manager.update(id, { title: "u" });
    await manager.delete(id);
    expect(events).toEqual(["task:created:t", "task:status:t", "task:progress:t", "task:output:t", "task:updated:u", `task:deleted:${id}`]);
    await manager.close();
  });
});

describe("metrics", () => {
  it("count creates, updates, deletes, loads and saves, and errors by code", async () => {
    const repository = new TaskRepository({ driver: new MemoryStorageDriver() });
    const manager = new TaskManager(new EventBus(), repository);
    await manager.loadFromRepository();
    const id = await manager.create({ title: "measured" });
    await manager.appendOutput(id, "a");
    await manager.update(id, { title: "b" });
    await manager.delete(id);
    await expect(repository.save({ id: "bad id" } as never)).rejects.toThrow(TaskStoreError);
    const snapshot = repository.metrics();
    expect(snapshot.operations.create.count).toBe(1);
    expect(snapshot.operations.update.count).toBe(2);
    expect(snapshot.operations.delete.count).toBe(1);
    expect(snapshot.operations.load.count).toBeGreaterThanOrEqual(1);
    expect(snapshot.operations.save.count).toBeGreaterThanOrEqual(1);
    expect(snapshot.operations.create.maxMs).toBeGreaterThanOrEqual(snapshot.operations.create.p50Ms);
    expect(snapshot.taskCount).toBe(0);
    const diagnostics = await repository.diagnose();
    expect(diagnostics).toMatchObject({ driver: "memory", schemaVersion: "1.0.0", taskCount: 0, capabilities: { locking: true } });
    expect(diagnostics.description?.location).toMatch(/^memory:/);
    await manager.close();
  });

  it("record storage errors by code with the recent ones for diagnose", async () => {
    const driver = new MemoryStorageDriver();
    driver.writeRaw("{not json");
    const repository = new TaskRepository({ driver });
    await expect(repository.loadAll()).rejects.toThrow();
    const snapshot = repository.metrics();
    expect(snapshot.errors.CORRUPT_DATA).toBeGreaterThan(0);
    expect(snapshot.recentErrors.at(-1)).toMatchObject({ code: "CORRUPT_DATA", operation: "load" });
  });
});

describe("the default driver", () => {
  it("new TaskRepository() where @taskstore/driver-json-file cannot be found fails with DRIVER_NOT_INSTALLED naming the package", async () => {
    // A child process in an empty folder: neither core's location, the script's nor the working
    // folder can resolve the driver (the workspace itself has it, so this cannot run in-process).
    const dir = await mkdtemp(path.join(tmpdir(), "taskstore-nodriver-"));
    const core = pathToFileURL(path.resolve("packages/core/dist/index.js")).href;
    const script = path.join(dir, "main.mjs");
    await writeFile(
      script,
      `import { TaskRepository } from ${JSON.stringify(core)};
       try { await new TaskRepository().loadAll(); console.log("loaded"); }
       catch (error) { console.log(JSON.stringify({ code: error.code, message: error.message })); }`,
    );
    const { stdout } = await run(process.execPath, [script], {
      cwd: dir,
      env: { PATH: process.env.PATH, HOME: dir, XDG_CONFIG_HOME: dir },
    });
    const result = JSON.parse(stdout.trim());
    expect(result.code).toBe("DRIVER_NOT_INSTALLED");
    expect(result.message).toContain("@taskstore/driver-json-file");
    await rm(dir, { recursive: true, force: true });
  });
});
