import { randomBytes } from "node:crypto";
import { EventBus, type StoredTask, TaskManager, TaskStoreError } from "@taskstore/core";
import { expect, it } from "vitest";
import { startChild } from "../child-driver.js";
import { byId, makeTask, sleep } from "../fixtures.js";
import type { Harness } from "../harness.js";
import { needProcesses } from "../waiting.js";

// Encryption at rest and compression go through core, so they work on every driver; these tests
// prove it on this one: round trips, a wrong or missing key refused with nothing written, key
// rotation, a mixed store, and (with the harness's readRaw()) no plaintext in the backend.

const key = () => randomBytes(32).toString("base64");
const CANARY = "canary-7f3a9c-do-not-store-in-clear";
const refused = (error: unknown) => TaskStoreError.hasCode(error, "ENCRYPTION");

async function writeCanaries(h: Harness, sealing: Parameters<Harness["repository"]>[0]): Promise<string> {
  const manager = new TaskManager(new EventBus(), await h.repository(sealing));
  await manager.loadFromRepository();
  const id = await manager.create({
    title: `title ${CANARY}`,
    description: `description ${CANARY}`,
    assignedTo: `agent-${CANARY}`,
    metadata: { [`key-${CANARY}`]: { nested: [`value ${CANARY}`, 42] } },
  });
  await manager.start(id);
  await manager.setProgress(id, { percent: 30, message: `step ${CANARY}`, currentStep: `compile ${CANARY}` });
  await manager.appendOutput(id, `output ${CANARY}`, "stdout", `source-${CANARY}`);
  await manager.appendOutput(id, `${"a long line of build output ".repeat(200)}${CANARY}`, "stderr");
  await manager.close();
  return id;
}

async function rawHasCanary(h: Harness): Promise<boolean> {
  const raw = await h.current.readRaw?.call(h.current);
  if (raw === undefined) throw new Error("conformance: readRaw() returned nothing");
  return Buffer.from(raw).includes(CANARY);
}

export function sealingTests(h: Harness): void {
  it("an encrypted store round-trips every field, compressed or not", async () => {
    for (const compress of [false, true]) {
      const keys = [key()];
      const id = await writeCanaries(h, { sealing: { keys, compress } });
      const task = (await (await h.repository({ sealing: { keys } })).loadById(id)) as StoredTask;
      expect(task).toMatchObject({
        title: `title ${CANARY}`,
        description: `description ${CANARY}`,
        assignedTo: `agent-${CANARY}`,
        status: "running",
        progress: { percent: 30, message: `step ${CANARY}`, currentStep: `compile ${CANARY}` },
        metadata: { [`key-${CANARY}`]: { nested: [`value ${CANARY}`, 42] } },
      });
      expect(task.logs.map((entry) => [entry.type, entry.source, entry.output.endsWith(CANARY)])).toEqual([
        ["stdout", `source-${CANARY}`, true],
        ["stderr", undefined, true],
      ]);
      await (await h.repository({ sealing: { keys } })).remove(id);
    }
  });

  it("no plaintext of an encrypted task reaches the backend (checked in its raw bytes)", async (ctx) => {
    if (!h.current.readRaw) ctx.skip("the harness gives no readRaw(), so the backend's bytes cannot be checked");
    const keys = [key()];
    await writeCanaries(h, { sealing: { keys, compress: true } });
    expect(await rawHasCanary(h)).toBe(false);
    // The check can see plaintext: the same tasks written unencrypted (the keys only open) put
    // the canary in the backend.
    await writeCanaries(h, { sealing: { keys, encrypt: false } });
    expect(await rawHasCanary(h)).toBe(true);
  });

  it("a wrong or missing key is refused with ENCRYPTION, and nothing is written", async () => {
    const keys = [key()];
    const id = await writeCanaries(h, { sealing: { keys } });
    const before = await (await h.driver()).loadData();
    await expect((await h.repository({ sealing: { keys: [key()] } })).loadAll()).rejects.toSatisfy(refused);
    await expect((await h.repository()).loadAll()).rejects.toSatisfy(refused);
    const wrong = new TaskManager(new EventBus(), await h.repository({ sealing: { keys: [key()] } }));
    await expect(wrong.loadFromRepository()).rejects.toSatisfy(refused);
    await expect(
      (await h.repository({ sealing: { keys: [key()] } })).apply([
        { type: "append", id, entries: [{ timestamp: 1, type: "log", output: "x" }], at: 1 },
      ]),
    ).rejects.toSatisfy(refused);
    await expect((await h.repository()).remove(id)).rejects.toSatisfy(refused);
    expect(byId((await (await h.driver()).loadData()).tasks)).toEqual(byId(before.tasks));
  });

  it("key rotation: old keys still read, new writes use the new key, reseal() re-encrypts everything", async () => {
    const old = key();
    const fresh = key();
    const id = await writeCanaries(h, { sealing: { keys: [old] } });
    const rotated = await h.repository({ sealing: { keys: [fresh, old] } });
    expect((await rotated.loadById(id))?.title).toBe(`title ${CANARY}`);
    const manager = new TaskManager(new EventBus(), rotated);
    await manager.loadFromRepository();
    const second = await manager.create({ title: "sealed with the new key" });
    expect(await rotated.reseal()).toEqual({ tasks: 2 });
    const after = await (await h.repository({ sealing: { keys: [fresh] } })).loadAll();
    expect(after.map((task) => task.title).sort()).toEqual(["sealed with the new key", `title ${CANARY}`].sort());
    expect(after.find((task) => task.id === second)).toBeDefined();
    await expect((await h.repository({ sealing: { keys: [old] } })).loadAll()).rejects.toSatisfy(refused);
  });

  it("sealing switched on for a plain store: the mixed store reads, reseal() seals it all, and off again", async () => {
    const keys = [key()];
    const plain = await writeCanaries(h, {});
    const sealedRepo = await h.repository({ sealing: { keys, compress: true } });
    const manager = new TaskManager(new EventBus(), sealedRepo);
    await manager.loadFromRepository();
    await manager.appendOutput(plain, "written sealed into a plain task");
    const added = await manager.create({ title: "sealed from the start" });
    expect(byId(await sealedRepo.loadAll()).map((task) => task.id)).toEqual([plain, added].sort());
    await sealedRepo.reseal();
    await expect((await h.repository()).loadAll()).rejects.toSatisfy(refused);
    // Off again: the keys only open, new writes are plain; reseal() then decrypts every task.
    const opening = await h.repository({ sealing: { keys, encrypt: false } });
    expect(await opening.reseal()).toEqual({ tasks: 2 });
    const tasks = byId(await (await h.repository()).loadAll());
    expect(tasks.map((task) => task.id)).toEqual([plain, added].sort());
    expect(
      tasks
        .find((task) => task.id === plain)
        ?.logs.map((entry) => entry.output)
        .at(-1),
    ).toBe("written sealed into a plain task");
  });

  it("a rotation killed halfway (SIGKILL during reseal) leaves every task readable with the keys then configured", async (ctx) => {
    needProcesses(h, ctx);
    const old = key();
    const fresh = key();
    const sealedOld = await h.repository({ sealing: { keys: [old] } });
    await sealedOld.saveMany(Array.from({ length: 300 }, (_, i) => makeTask({ id: `rot-${i}`, title: `secret ${i}` })));
    for (let round = 0; round < 5; round++) {
      const child = startChild({ driver: h.child(), mode: "reseal", keys: [fresh, old] });
      await child.waitFor((line) => line.ready === true, "opening the store");
      await sleep(Math.random() * 40);
      child.process.kill("SIGKILL");
      await child.exited;
      const tasks = await (await h.repository({ sealing: { keys: [fresh, old] } })).loadAll();
      expect(tasks.map((task) => task.title).sort()).toEqual(Array.from({ length: 300 }, (_, i) => `secret ${i}`).sort());
    }
    // Finished once, the old key can go.
    await (await h.repository({ sealing: { keys: [fresh, old] } })).reseal();
    expect(await (await h.repository({ sealing: { keys: [fresh] } })).loadAll()).toHaveLength(300);
  });
}
