import { EventBus, MemoryStorageDriver, TaskManager, TaskRepository } from "@taskstore/core";
import { loadRows, medians, seedTasks, storeOf } from "./measure.js";
import type { BenchOptions, BenchRow, BenchSuite } from "./types.js";

// What core adds to a load on top of the driver, on the driver that costs nothing itself: the
// memory driver's `loadData()` (a structured clone of what it holds) beside
// `TaskManager.loadFromRepository()` over it (core's checks of every task and the manager's
// index), and beside `JSON.parse` of the same text (the memory driver keeps its store as JSON
// text, so that is the floor).

export const run: BenchSuite = async (options: BenchOptions): Promise<BenchRow[]> => {
  const count = 10_000;
  const data = storeOf(seedTasks(count, 2));
  /** `load` returns the time it took and the tasks it loaded. */
  const time = (load: () => Promise<[number, number]>) => async () => {
    const [elapsed, loaded] = await load();
    if (loaded !== count) throw new Error(`core bench: loaded ${loaded} tasks, expected ${count}`);
    return 1000 / elapsed;
  };
  const timed = async (load: () => Promise<number>): Promise<[number, number]> => {
    const start = performance.now();
    const loaded = await load();
    return [performance.now() - start, loaded];
  };
  // One named store: every instance opened with the name shares it.
  const store = `bench-core-${process.pid}`;
  const driver = new MemoryStorageDriver({ store });
  await driver.initialize();
  await driver.saveData(data);
  const text = JSON.stringify(data);
  const [loadData, manager, direct] = (await medians(options.quick ? 3 : 15, [
    time(() => timed(async () => (await driver.loadData()).tasks.length)),
    time(async () => {
      const tasks = new TaskManager(new EventBus(), new TaskRepository({ driver: new MemoryStorageDriver({ store }) }));
      const start = performance.now();
      await tasks.loadFromRepository();
      const elapsed = performance.now() - start;
      // Counted after the clock: list() copies every task, which is not a load's cost.
      const loaded = tasks.list().length;
      await tasks.close(); // the named store outlives its instances
      return [elapsed, loaded];
    }),
    time(() => timed(async () => (JSON.parse(text) as typeof data).tasks.length)),
  ])) as [number, number, number];
  await driver.close();
  return loadRows(`load of ${count.toLocaleString("en-US")} tasks`, "memory driver", "JSON.parse of the same text", [
    loadData,
    manager,
    direct,
  ]);
};
