// A child process of runWorkload() (workload.ts). It loads @taskstore/core and the driver from the
// absolute module URLs it is given (this package depends on neither) and prints one JSON line.
// Modes: "seed" creates the shared task; "work" runs the mixed operations; "load" prints every stored task.
import type { WorkerJob, WorkerReport, WorkloadTask } from "./workload.js";

interface Manager {
  eventBus: { on(event: "persistence:error", listener: (payload: { error: { code: string; message: string } }) => void): unknown };
  loadFromRepository(): Promise<void>;
  create(input: { title: string; parentId?: string; metadata?: Record<string, unknown> }): Promise<string>;
  update(id: string, updates: { title?: string; description?: string }): Promise<void>;
  delete(id: string): Promise<void>;
  start(id: string): Promise<void>;
  setProgress(id: string, progress: { percent: number; message?: string }): Promise<void>;
  appendOutput(id: string, output: string, type?: string, source?: string): Promise<void>;
  assignAgent(id: string, assignment: { assignedTo: string }): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
}
interface Repository {
  loadAll(): Promise<WorkloadTask[]>;
  close(): Promise<void>;
}
interface Core {
  EventBus: new () => Manager["eventBus"];
  TaskRepository: new (options: { driver: unknown }) => Repository;
  TaskManager: new (bus: Manager["eventBus"], repository: Repository) => Manager;
}

const job = JSON.parse(process.argv[2] as string) as WorkerJob;
const core = (await import(job.core)) as Core;
const Driver = (await import(job.driver.module))[job.driver.export] as new (options: unknown) => unknown;
const repository = () => new core.TaskRepository({ driver: new Driver(job.driver.options) });
const say = (message: unknown) => process.stdout.write(`${JSON.stringify(message)}\n`);

async function openManager(errors: string[] = []): Promise<Manager> {
  const bus = new core.EventBus();
  bus.on("persistence:error", ({ error }) => errors.push(`${error.code}: ${error.message}`));
  const manager = new core.TaskManager(bus, repository());
  await manager.loadFromRepository();
  return manager;
}

/** Each worker patches one field of the shared task: with four workers, each its own. */
const FIELDS = ["title", "description", "assignedTo", "progress.message"] as const;

async function work(worker: number, sharedId: string, operations: number, concurrency: number): Promise<WorkerReport> {
  const errors: string[] = [];
  const manager = await openManager(errors);
  const own: string[] = []; // ids of this worker's live tasks, oldest first
  const live: WorkerReport["live"] = {};
  const deleted: string[] = [];
  const sharedLines: string[] = [];
  const field = FIELDS[worker % FIELDS.length] as (typeof FIELDS)[number];
  let patched: string | null = null;
  // Expectations are recorded when a call is made: TaskManager applies calls in call order.
  const create = (i: number, underShared: boolean): Promise<unknown> => {
    const title = `w${worker}-${i}`;
    const metadata = { worker, i };
    return manager.create({ title, metadata, ...(underShared ? { parentId: sharedId } : {}) }).then((id) => {
      own.push(id);
      live[id] = { title, percent: 0, status: "pending", lines: [], metadata, parentId: underShared ? sharedId : null };
    });
  };
  const appendShared = (i: number): Promise<unknown> => {
    sharedLines.push(`w${worker}-${i}`);
    return manager.appendOutput(sharedId, `w${worker}-${i}`, "stdout", `w${worker}`);
  };
  for (let start = 0; start < operations; start += concurrency) {
    const calls: Promise<unknown>[] = [];
    for (let i = start; i < Math.min(start + concurrency, operations); i++) {
      const kind = i % 10;
      // Creates resolve later: until one has, the own-task operations create instead.
      if (kind === 0 || kind === 5 || own.length === 0) {
        calls.push(create(i, kind !== 5));
        continue;
      }
      if (kind === 2 || kind === 8) {
        calls.push(appendShared(i));
        continue;
      }
      if (kind === 7) {
        const value = `w${worker} patch ${i}`;
        patched = value;
        if (field === "title") calls.push(manager.update(sharedId, { title: value }));
        else if (field === "description") calls.push(manager.update(sharedId, { description: value }));
        else if (field === "assignedTo") calls.push(manager.assignAgent(sharedId, { assignedTo: value }));
        else calls.push(manager.setProgress(sharedId, { percent: i % 101, message: value }));
        continue;
      }
      if (kind === 9) {
        if (own.length > 2) {
          const victim = own.shift() as string;
          delete live[victim];
          deleted.push(victim);
          calls.push(manager.delete(victim));
        } else {
          calls.push(appendShared(i));
        }
        continue;
      }
      const target = own[i % own.length] as string;
      const expected = live[target] as WorkerReport["live"][string];
      if (kind === 1 || (kind === 6 && expected.status !== "pending")) {
        expected.lines.push(`w${worker}-${i}`);
        calls.push(manager.appendOutput(target, `w${worker}-${i}`));
      } else if (kind === 3) {
        expected.percent = i % 100;
        calls.push(manager.setProgress(target, { percent: i % 100, message: `step ${i}` }));
      } else if (kind === 4) {
        expected.title = `w${worker}-${i}-renamed`;
        calls.push(manager.update(target, { title: expected.title }));
      } else {
        expected.status = "running";
        calls.push(manager.start(target));
      }
    }
    await Promise.all(calls);
  }
  await manager.flush();
  await manager.close();
  return {
    worker,
    acknowledged: operations,
    live,
    deleted,
    sharedLines,
    patched: patched === null ? null : { field, value: patched },
    errors,
  };
}

if (job.mode === "seed") {
  const manager = await openManager();
  say(await manager.create({ title: "shared" }));
  await manager.close();
} else if (job.mode === "work") {
  say(await work(job.worker, job.sharedId, job.operations, job.concurrency));
} else {
  const store = repository();
  say(await store.loadAll());
  await store.close();
}
