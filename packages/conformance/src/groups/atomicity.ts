import { SCHEMA_VERSION, type StorageData, type StoredTask } from "@taskstore/core";
import { expect, it } from "vitest";
import { startChild } from "../child-driver.js";
import { makeTask } from "../fixtures.js";
import type { Harness } from "../harness.js";
import { tornReason } from "../torn.js";
import { need, needProcesses } from "../waiting.js";

const GENERATIONS = 6;

/** The store of generation `gen`: `size` tasks with fixed ids, each carrying `metadata.gen`. */
function generation(size: number, gen: number): StoredTask[] {
  return Array.from({ length: size }, (_, i) =>
    makeTask({
      id: `atom-${i}`,
      title: `generation ${gen}`,
      metadata: { gen },
      createdAt: 1_700_000_000_000 + i,
      updatedAt: 1_700_000_000_000 + gen,
    }),
  );
}

/**
 * Writes GENERATIONS whole stores with `write` while a reader in this process (another instance)
 * and one in a child process load again and again; returns what each reader saw.
 */
async function readWhileWriting(h: Harness, size: number, write: (tasks: StoredTask[]) => Promise<void>) {
  const child = startChild({ driver: h.child(), mode: "reader", size });
  try {
    await child.waitFor((line) => line.ready === true, "its first load");
    const reader = await h.driver();
    const torn: string[] = [];
    let loads = 0;
    let writing = true;
    const reading = (async () => {
      while (writing) {
        const reason = tornReason(await reader.loadData(), size);
        loads++;
        if (reason && torn.length < 5) torn.push(reason);
        await new Promise((resolve) => setImmediate(resolve)); // the writer's I/O gets its turn
      }
    })();
    try {
      for (let gen = 1; gen <= GENERATIONS; gen++) await write(generation(size, gen));
    } finally {
      writing = false;
      await reading;
    }
    child.send("stop");
    const result = (await child.waitFor((line) => line.result !== undefined || line.error !== undefined, "its report")) as {
      result?: { loads: number; torn: string[] };
      error?: string;
    };
    if (result.error) throw new Error(`conformance: the reading process failed: ${result.error}`);
    return { here: { loads, torn }, there: result.result as { loads: number; torn: string[] } };
  } finally {
    child.process.kill("SIGKILL");
    await child.exited;
  }
}

export function atomicityTests(h: Harness): void {
  it("readers in this process and in another never see a store half written by saveData()", async (ctx) => {
    needProcesses(h, ctx);
    const size = h.processOptions.atomicStoreSize;
    const writer = await h.driver();
    const { here, there } = await readWhileWriting(h, size, (tasks) =>
      writer.saveData({
        version: SCHEMA_VERSION,
        tasks,
        metadata: { lastUpdated: Date.now(), totalTasks: tasks.length },
      } satisfies StorageData),
    );
    expect(here.torn).toEqual([]);
    expect(there.torn).toEqual([]);
    expect(here.loads + there.loads).toBeGreaterThan(GENERATIONS);
  });

  it("readers in this process and in another never see a change set half applied by transact()", async (ctx) => {
    needProcesses(h, ctx);
    await need(h, ctx, "incremental");
    const size = h.processOptions.atomicStoreSize;
    const writer = await h.repository();
    const { here, there } = await readWhileWriting(h, size, (tasks) => writer.saveMany(tasks));
    expect(here.torn).toEqual([]);
    expect(there.torn).toEqual([]);
    expect(here.loads + there.loads).toBeGreaterThan(GENERATIONS);
  });
}
