import { type DriverCapabilities, parseStorageData, TaskStoreError } from "@taskstore/core";
import { expect, it, type TestContext } from "vitest";
import { byId, makeLogs, makeTask } from "../fixtures.js";
import type { Harness } from "../harness.js";

async function need(h: Harness, ctx: TestContext, ...flags: (keyof DriverCapabilities)[]): Promise<void> {
  const caps = await h.capabilities();
  const missing = flags.filter((flag) => !caps[flag]);
  if (missing.length > 0) ctx.skip(`the driver does not declare: ${missing.join(", ")}`);
}

export function backupTests(h: Harness): void {
  it("backup() resolves and leaves the store as it was", async () => {
    const repository = await h.repository();
    const tasks = [makeTask({ logs: makeLogs(3) }), makeTask()];
    await repository.saveMany(tasks);
    await repository.backup();
    expect(byId(await (await h.repository()).loadAll())).toEqual(byId(tasks));
  });

  it("restore() brings back the store as it was at backup()", async (ctx) => {
    await need(h, ctx, "backup", "restore");
    const repository = await h.repository();
    const kept = makeTask({ id: "in-backup", logs: makeLogs(4) });
    await repository.save(kept);
    await repository.backup();
    await repository.save(makeTask({ id: "after-backup" }));
    await repository.remove("in-backup");
    const result = await repository.restore();
    expect(typeof result.restoredFrom).toBe("string");
    expect(typeof result.movedTo).toBe("string");
    expect(await (await h.repository()).loadAll()).toEqual([kept]);
  });

  it("restore() without a backup throws CORRUPT_DATA and leaves the store untouched", async (ctx) => {
    await need(h, ctx, "restore");
    const repository = await h.repository();
    const task = makeTask();
    await repository.save(task);
    await expect(repository.restore()).rejects.toSatisfy((error) => TaskStoreError.hasCode(error, "CORRUPT_DATA"));
    expect(await (await h.repository()).loadAll()).toEqual([task]);
  });

  it("a backup of an empty store restores to an empty store", async (ctx) => {
    await need(h, ctx, "backup", "restore");
    const repository = await h.repository();
    await repository.backup();
    await repository.save(makeTask());
    await repository.restore();
    expect(await (await h.repository()).loadAll()).toEqual([]);
  });

  it("the newest backup wins: restore() brings back the second backup, not the first", async (ctx) => {
    await need(h, ctx, "backup", "restore");
    const repository = await h.repository();
    await repository.save(makeTask({ id: "first" }));
    await repository.backup();
    await repository.save(makeTask({ id: "second" }));
    await repository.backup();
    await repository.save(makeTask({ id: "third" }));
    await repository.restore();
    expect((await (await h.repository()).loadAll()).map((task) => task.id).sort()).toEqual(["first", "second"]);
  });

  it("a backup is verified, not assumed: it holds the store as it was at backup()", async (ctx) => {
    await need(h, ctx, "backup");
    const caps = await h.capabilities();
    const readBackup = h.current.readBackup;
    if (!caps.restore && !readBackup) {
      throw new Error(
        "conformance: the driver declares backup but not restore, and setup() gave no readBackup(): the suite cannot check what backup() made. " +
          "Declare restore, or return readBackup() from setup().",
      );
    }
    const repository = await h.repository();
    const kept = [makeTask({ id: "in-the-backup", logs: makeLogs(5) }), makeTask({ id: "also-in-it" })];
    await repository.saveMany(kept);
    await repository.backup();
    await repository.save(makeTask({ id: "after-the-backup" }));
    await repository.remove("also-in-it");
    if (readBackup) {
      const copy = parseStorageData(await readBackup.call(h.current));
      expect(byId(copy.tasks)).toEqual(byId(kept));
    }
    if (caps.restore) {
      await repository.restore();
      expect(byId(await (await h.repository()).loadAll())).toEqual(byId(kept));
    }
  });
}
