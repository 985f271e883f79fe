// The child process of the suite's process groups. It opens the store from the descriptor it is
// given (argv[2] is the job, as JSON), does one job and prints JSON lines on stdout: progress
// lines as it goes, and `{ "result": ... }` (or `{ "error": ... }`) last.
import { createInterface } from "node:readline";
import { EventBus, IncrementalBackups, type StorageData, type StorageDriver, TaskManager, TaskRepository } from "@taskstore/core";
import { type ChildJob, openChildDriver } from "./child-driver.js";
import { tornReason } from "./torn.js";
import { runWorker } from "./workload.js";

const job = JSON.parse(process.argv[2] as string) as ChildJob;
const say = (line: unknown) => process.stdout.write(`${JSON.stringify(line)}\n`);

/** Lines from the parent on stdin; `closed` resolves when the parent's end closes (or the parent dies). */
const stdinLines: string[] = [];
const lineWaiters: ((line: string | undefined) => void)[] = [];
let stdinClosed = false;
const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  const waiter = lineWaiters.shift();
  if (waiter) waiter(line);
  else stdinLines.push(line);
});
input.on("close", () => {
  stdinClosed = true;
  for (const waiter of lineWaiters.splice(0)) waiter(undefined);
});
function nextLine(): Promise<string | undefined> {
  if (stdinLines.length > 0) return Promise.resolve(stdinLines.shift());
  if (stdinClosed) return Promise.resolve(undefined);
  return new Promise((resolve) => lineWaiters.push(resolve));
}

async function open(): Promise<StorageDriver> {
  return openChildDriver(job.driver);
}

async function manager(): Promise<TaskManager> {
  const m = new TaskManager(new EventBus(), new TaskRepository({ driver: await open() }));
  await m.loadFromRepository();
  return m;
}

async function run(): Promise<unknown> {
  switch (job.mode) {
    case "seed": {
      const m = await manager();
      const id = await m.create({ title: String(job.title ?? "shared") });
      await m.close();
      return id;
    }
    case "work":
      return runWorker(await manager(), job as never);
    case "load": {
      const repository = new TaskRepository({ driver: await open() });
      const tasks = await repository.loadAll();
      await repository.close();
      return tasks;
    }
    case "append": {
      const m = await manager();
      await m.appendOutput(String(job.taskId), String(job.line));
      await m.close();
      return "appended";
    }
    case "hold-lock": {
      const driver = await open();
      await driver.initialize();
      await driver.acquireLock();
      say({ locked: true });
      while ((await nextLine()) !== "release") {
        if (stdinClosed) return "parent gone";
      }
      await driver.releaseLock();
      await driver.close?.();
      return "released";
    }
    case "diagnose": {
      // The errors recorded with the store, as another process's diagnose() sees them.
      const repository = new TaskRepository({ driver: await open() });
      const { recentErrors } = await repository.diagnose();
      await repository.close();
      return recentErrors;
    }
    case "reseal": {
      // Rewrites the store with the given keys (newest first), as after a rotation.
      const repository = new TaskRepository({ driver: await open(), sealing: { keys: job.keys as string[] } });
      say({ ready: true });
      const result = await repository.reseal();
      await repository.close();
      return result;
    }
    case "incremental-backup":
      return backupUntilKilled();
    case "crash-writer":
      return crashWriter();
    case "reader":
      return reader();
    default:
      throw new Error(`unknown job mode ${job.mode}`);
  }
}

/**
 * Writes until killed: appends to one task, and every fourth call creates a task, with a few calls
 * in flight. `{ sent: i }` is printed before a call is made and `{ ack: i }` once it resolved, so
 * the parent knows what was acknowledged when its SIGKILL landed.
 */
async function crashWriter(): Promise<unknown> {
  const m = await manager();
  const tag = String(job.tag);
  const taskId = String(job.taskId);
  const inFlight = Number(job.concurrency ?? 4);
  const maxOps = Number(job.maxOps ?? 100_000);
  // A write that degraded (resolved, but only queued) is no acknowledgement: say so.
  m.eventBus.on("persistence:error", ({ error }) => say({ persistenceError: `${error.code}: ${error.message}` }));
  say({ ready: true });
  let next = 0;
  const lane = async () => {
    while (next < maxOps && !stdinClosed) {
      const i = next++;
      say({ sent: i });
      if (i % 4 === 3) await m.create({ title: `${tag}-${i}` });
      else await m.appendOutput(taskId, `${tag}-${i}`);
      say({ ack: i });
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  await m.close();
  return { sent: next };
}

/**
 * Appends a line to one task and makes an incremental backup after each, until killed (every
 * fourth point a full base, and the retention rule folding the oldest each time): `{ ack, i }`
 * once the point holding line `i` is in the chain.
 */
async function backupUntilKilled(): Promise<unknown> {
  const m = await manager();
  const repository = new TaskRepository({ driver: await open() });
  const backups = new IncrementalBackups(repository, { dir: String(job.dir), keep: Number(job.keep) });
  say({ ready: true });
  let i = 0;
  for (; !stdinClosed; i++) {
    await m.appendOutput(String(job.taskId), `${job.tag}-${i}`);
    const { point } = await backups.backup({ full: i % 4 === 3 });
    say({ ack: point.id, i });
  }
  await m.close();
  await repository.close();
  return { points: i };
}

/** Loads again and again until told to stop, and reports every load that mixed two stores. */
async function reader(): Promise<unknown> {
  const driver = await open();
  await driver.initialize();
  const size = Number(job.size);
  let loads = 0;
  const torn: string[] = [];
  const check = (data: StorageData) => {
    loads++;
    const reason = tornReason(data, size);
    if (reason && torn.length < 5) torn.push(reason);
  };
  check(await driver.loadData());
  say({ ready: true });
  let stop = false;
  void nextLine().then(() => {
    stop = true;
  });
  // A turn of the event loop between loads, so a driver whose loadData() never yields still
  // lets the stop message in.
  while (!stop) {
    check(await driver.loadData());
    await new Promise((resolve) => setImmediate(resolve));
  }
  await driver.close?.();
  return { loads, torn };
}

try {
  say({ result: await run() });
} catch (error) {
  say({ error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
}
input.close();
process.exit(0);
