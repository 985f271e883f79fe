import { randomBytes, randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { EventBus, MemoryStorageDriver, RECENT_ERRORS_KEY, TaskManager, TaskRepository } from "@taskstore/core";
import { describe, expect, it } from "vitest";
import { StorageUnavailableError } from "../src/errors.js";
import { mergeStoredErrors, openedMessage, type StoredError, storableMessage, UnwrittenErrors } from "../src/store-errors.js";
import { FlakyDriver } from "./helpers.js";

describe("what an error recorded with the store may say", () => {
  it("a URL's password, secret assignments and bearer tokens are masked", () => {
    const message = storableMessage(
      "cannot reach rediss://agent:hunter2@cache:6380/0 (also s3://h/b?secretAccessKey=AKIA9&x=1, PGPASSWORD=pw1 and Authorization: Bearer eyJhbGc.x-y)",
    );
    for (const secret of ["hunter2", "AKIA9", "pw1", "eyJhbGc.x-y"]) expect(message).not.toContain(secret);
    expect(message).toContain("rediss://agent:***@cache:6380/0");
    expect(message).toContain("x=1");
  });

  it("quoted text, where messages quote the data they read, is left out; apostrophes in words stay", () => {
    expect(storableMessage(`Unexpected token 'a', "my secret task title" is not valid JSON; the driver can't read the store's file`)).toBe(
      `Unexpected token '…', "…" is not valid JSON; the driver can't read the store's file`,
    );
  });

  it("a long message is cut to 500 characters", () => {
    expect(storableMessage("x".repeat(10_000))).toHaveLength(500);
  });

  it("only errors about the store are kept, not a caller's own mistakes", () => {
    const unwritten = new UnwrittenErrors();
    unwritten.note(new StorageUnavailableError("down"), "create");
    unwritten.note(Object.assign(new StorageUnavailableError("x"), { code: "NOT_FOUND" as const }), "update");
    expect(unwritten.list()).toMatchObject([{ code: "STORAGE_UNAVAILABLE", operation: "create", pid: process.pid, host: hostname() }]);
  });

  it("merging keeps each error once and the newest 50", () => {
    const error = (at: number): StoredError => ({ at, code: "LOCK_TIMEOUT", operation: "save", message: `m${at}`, pid: 1, host: "h" });
    const stored = Array.from({ length: 40 }, (_, i) => error(i));
    const merged = mergeStoredErrors(stored, [...stored.slice(-5), ...Array.from({ length: 20 }, (_, i) => error(100 + i))]);
    expect(merged).toHaveLength(50);
    expect(merged.map((e) => e.at)).toEqual([
      ...Array.from({ length: 30 }, (_, i) => 10 + i),
      ...Array.from({ length: 20 }, (_, i) => 100 + i),
    ]);
  });
});

/** A loaded manager whose writes reject on a storage failure (no degradation), so each failure is one error. */
async function open(driver: FlakyDriver, recordErrors = true) {
  const repository = new TaskRepository({ driver, degrade: false, recordErrors });
  const manager = new TaskManager(new EventBus(), repository);
  await manager.loadFromRepository();
  return { repository, manager };
}

describe("errors recorded with the store, by kind of driver", () => {
  it("a six-method driver's errors ride on the next write: no extra save", async () => {
    const store = randomUUID();
    const flaky = new FlakyDriver(new MemoryStorageDriver({ store, incremental: false }), () => new StorageUnavailableError("down"));
    let saves = 0;
    const save = flaky.saveData.bind(flaky);
    flaky.saveData = async (data) => {
      saves++;
      return save(data);
    };
    const { repository, manager } = await open(flaky);
    flaky.broken = true;
    await expect(manager.create({ title: "refused" })).rejects.toThrow("down");
    flaky.broken = false;
    saves = 0;
    await manager.create({ title: "accepted" });
    await repository.flush();
    expect(saves).toBe(1);
    const data = (await new MemoryStorageDriver({ store }).loadData()).metadata as Record<string, unknown>;
    expect(data[RECENT_ERRORS_KEY]).toMatchObject([{ code: "STORAGE_UNAVAILABLE", operation: "create" }]);
  });

  it("a driver with transact() gets them in one save of their own, at most once a minute; the rest wait and show in diagnose()", async () => {
    const store = randomUUID();
    const flaky = new FlakyDriver(new MemoryStorageDriver({ store }), () => new StorageUnavailableError("down"));
    const { repository, manager } = await open(flaky);
    const other = () => new TaskRepository({ driver: new MemoryStorageDriver({ store }) });
    for (const round of [1, 2]) {
      flaky.broken = true;
      await expect(manager.create({ title: `refused ${round}` })).rejects.toThrow("down");
      flaky.broken = false;
      await manager.create({ title: `accepted ${round}` });
      await repository.flush();
    }
    expect((await other().diagnose()).recentErrors).toHaveLength(1);
    expect((await repository.diagnose()).recentErrors).toHaveLength(2);
  });

  it("on an encrypted store the messages are sealed: the raw store holds none, diagnose() with the key reads them", async () => {
    const store = randomUUID();
    const key = randomBytes(32).toString("base64");
    const canary = "metadata.canary-key-7f3a";
    const flaky = new FlakyDriver(
      new MemoryStorageDriver({ store, incremental: false }),
      () => new StorageUnavailableError(`down at ${canary}`),
    );
    const repository = new TaskRepository({ driver: flaky, degrade: false, sealing: { keys: [key] } });
    const manager = new TaskManager(new EventBus(), repository);
    await manager.loadFromRepository();
    flaky.broken = true;
    await expect(manager.create({ title: "refused" })).rejects.toThrow("down");
    flaky.broken = false;
    await manager.create({ title: "accepted" });
    await repository.flush();
    const raw = new MemoryStorageDriver({ store }).readRaw() ?? "";
    expect(raw).toContain(RECENT_ERRORS_KEY);
    expect(raw).not.toContain(canary);
    const withKey = new TaskRepository({ driver: new MemoryStorageDriver({ store }), sealing: { keys: [key] } });
    expect((await withKey.diagnose()).recentErrors).toMatchObject([{ code: "STORAGE_UNAVAILABLE", message: `down at ${canary}` }]);
    // A repository with another key cannot read the store at all: it says so, and shows no message it cannot open.
    const otherKey = new TaskRepository({
      driver: new MemoryStorageDriver({ store }),
      sealing: { keys: [randomBytes(32).toString("base64")] },
    });
    const seen = (await otherKey.diagnose()).recentErrors;
    expect(seen.map((error) => error.code)).toContain("ENCRYPTION");
    expect(JSON.stringify(seen)).not.toContain(canary);
    expect(openedMessage(raw.slice(raw.indexOf("tse1.")).split('"')[0] as string, undefined)).toBe(
      "(sealed: the store is encrypted and no key was given)",
    );
    expect(
      openedMessage("tse1.x", () => {
        throw new Error("no key");
      }),
    ).toBe("(sealed with a key that was not given)");
  });

  it("recordErrors: false keeps them in this process's metrics only", async () => {
    const store = randomUUID();
    const flaky = new FlakyDriver(new MemoryStorageDriver({ store, incremental: false }), () => new StorageUnavailableError("down"));
    const { repository, manager } = await open(flaky, false);
    flaky.broken = true;
    await expect(manager.create({ title: "refused" })).rejects.toThrow("down");
    flaky.broken = false;
    await manager.create({ title: "accepted" });
    expect((await repository.diagnose()).recentErrors).toEqual([]);
    expect(repository.metrics().recentErrors).toHaveLength(1);
  });
});
