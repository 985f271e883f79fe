import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import path from "node:path";
import { EventBus, parseStorageData, type StorageData, TaskManager, TaskRepository, TaskStoreError } from "@taskstore/core";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { JSONFileStorageDriver } from "../src/index.js";
import { assertBuilt, type Child, processState, type StartOptions, signalGroup, startChild, tempDir, until, WORKER } from "./helpers.js";

// A lock no stall or PID namespace breaks (issue 14, proofs 4 and 5). Real processes: a holder
// that stops itself (SIGSTOP) while it holds the lock in the middle of a write, and holders and
// writers in other PID namespaces (`unshare --pid`, as root) on the same host and folder.

let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});
beforeAll(assertBuilt);

/** `unshare` running its command as a child in a new PID namespace with its own /proc (root only). */
const UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];
/**
 * Runs node under a shell inside the namespace, so node is not the namespace's init (pid 1
 * ignores signals it has no handler for, its own SIGSTOP included); `pids` first forks that many
 * short processes, so node's pid inside is `pids + 2`.
 */
function inNamespace(pids = 0): string[] {
  const burn = pids > 0 ? `i=0; while [ $i -lt ${pids} ]; do /bin/true; i=$((i+1)); done; ` : "";
  return [...UNSHARE, "sh", "-c", `${burn}"$0" "$@"; exit $?`];
}
const canUnshare = (() => {
  try {
    execFileSync(UNSHARE[0] as string, [...UNSHARE.slice(1), "true"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();
if (!canUnshare && process.env.CI === "true") throw new Error("these tests need `unshare --pid` (util-linux, as root)");
const OWN_PID_NAMESPACE = readlinkSync("/proc/self/ns/pid");

async function store(): Promise<string> {
  const { dir, cleanup } = await tempDir();
  cleanups.push(cleanup);
  return path.join(dir, "tasks.json");
}

function track(child: Child, group = false): Child {
  cleanups.push(async () => {
    if (child.process.exitCode === null && child.process.signalCode === null) {
      if (group) signalGroup(child, "SIGKILL");
      else child.process.kill("SIGKILL");
    }
    await child.exited;
  });
  return child;
}

function start(args: string[], options: StartOptions = {}): Child {
  return track(startChild(WORKER, args, process.env, options), options.detached ?? false);
}

/** Reads the store as a fresh driver instance would, checked against core's schema. */
async function loadStore(file: string): Promise<StorageData> {
  const driver = new JSONFileStorageDriver(file);
  await driver.initialize();
  return parseStorageData(await driver.loadData());
}

async function openManager(file: string, options: { lockExpiryMs?: number; lockTimeoutMs?: number } = {}): Promise<TaskManager> {
  const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new JSONFileStorageDriver({ path: file, ...options }) }));
  cleanups.push(() => manager.close().catch(() => undefined));
  await manager.loadFromRepository();
  return manager;
}

/** The node process running the worker among `root`'s descendants (itself included). */
function workerPid(root: number): number | undefined {
  const parents = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const line = readFileSync(`/proc/${name}/stat`, "utf8");
      parents.set(Number(name), Number(line.slice(line.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // gone meanwhile
    }
  }
  const family = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, parent] of parents) {
      if (family.has(parent) && !family.has(pid)) {
        family.add(pid);
        grew = true;
      }
    }
  }
  for (const pid of family) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (argv[0] === process.execPath && argv[1] === WORKER) return pid;
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/**
 * Proof 4 (and 5 with `holderOptions` putting the holder in another PID namespace): a holder
 * stops itself at `stopAt` in the middle of a write while holding the lock (it sets a task's
 * description), stays stopped past the stale period, another writer takes the lock over and its
 * write is acknowledged (the same task's title, and a new task); then the holder is resumed. Both
 * writes must be in the store: a stale write of the whole task by the holder would undo the title.
 */
async function stalledHolder(stopAt: string, holderOptions: StartOptions = {}, driverOptions: object = {}): Promise<void> {
  const file = await store();
  const first = await openManager(file);
  const seeded = await first.create({ title: "seeded" });
  await first.close();

  const holder = start(["stall-update", file, seeded, "from the stalled holder", stopAt, "2000", JSON.stringify(driverOptions)], {
    ...holderOptions,
    detached: true,
  });
  const stopping = await holder.waitFor("stopping");
  expect(stopping.at).toBe(stopAt);
  const pid = workerPid(holder.process.pid as number);
  expect(pid, "the holder's node process").toBeDefined();
  await until(() => processState(pid as number) === "T", "the holder to be stopped");

  // Waits out the stale period (the holder no longer refreshes its lock), takes over, writes.
  const writer = await openManager(file, { lockExpiryMs: 2_000, lockTimeoutMs: 30_000 });
  await writer.update(seeded, { title: "from the writer that took over" });
  const created = await writer.create({ title: "created by the writer" });
  expect(processState(pid as number), "still stopped when the other writes were acknowledged").toBe("T");
  await writer.close();

  signalGroup(holder, "SIGCONT");
  await holder.waitFor("acked");
  const { code, stderr } = await holder.exited;
  expect(code, stderr).toBe(0);
  expect(holder.messages.filter((m) => m.type === "persistence-error")).toEqual([]);

  const tasks = (await loadStore(file)).tasks;
  expect(tasks.map((task) => [task.id, task.title, task.description])).toEqual([
    [seeded, "from the writer that took over", "from the stalled holder"],
    [created, "created by the writer", undefined],
  ]);
}

describe("a holder that stalls past the stale period (SIGSTOP) while it writes", () => {
  it("stopped right before appending its record to the journal: after SIGCONT its record (a sequence already taken) counts for nothing, its write runs again; both are stored", async () => {
    await stalledHolder("append");
  });

  it("stopped in the middle of a compaction, between writing the new tasks.json and its rename: after SIGCONT it does not replace the new holder's store; both writes are stored", async () => {
    // Every write folds the journal: the holder's own write compacts.
    await stalledHolder("rename-store", {}, { compactionBytes: 0, compactionRatio: 0 });
  });

  it("stopped before creating its first temp file (store read, nothing written): after SIGCONT both writes are stored", async () => {
    await stalledHolder("open-temp");
  });
});

describe("a holder that stalls past the stale period while it releases the lock", () => {
  it("does not remove the new holder's lock when it resumes: the new holder keeps it and still writes", async () => {
    const file = await store();
    const first = await openManager(file);
    const seeded = await first.create({ title: "seeded" });
    await first.close();
    const holder = start(["stall-update", file, seeded, "from the stalled holder", "release-lock", "2000"], { detached: true });
    await holder.waitFor("stopping");
    const pid = holder.process.pid as number;
    await until(() => processState(pid) === "T", "the holder to be stopped");
    const driver = new JSONFileStorageDriver({ path: file, lockExpiryMs: 2_000, lockTimeoutMs: 30_000 });
    cleanups.push(() => driver.close());
    await driver.initialize();
    await driver.acquireLock(); // after the stale period
    signalGroup(holder, "SIGCONT");
    await holder.waitFor("acked"); // its write was done before it stalled
    expect((await holder.exited).code).toBe(0);
    expect((await driver.describe()).lockHolder).toMatchObject({ pid: process.pid });
    const data = await driver.loadData();
    await driver.saveData({ ...data, metadata: { ...data.metadata, lastUpdated: 1 } }); // under the lock it still holds
    await driver.releaseLock();
    expect((await loadStore(file)).tasks.map((task) => task.description)).toEqual(["from the stalled holder"]);
  });
});

describe.skipIf(!canUnshare)("holders and writers in other PID namespaces (unshare --pid, same host, same folder)", () => {
  it("a writer in another PID namespace does not take over a live holder at once: its pid means nothing there", async () => {
    const file = await store();
    const holder = start(["hold-lock", file]);
    const { pid } = await holder.waitFor("locked");
    // In a new namespace this pid does not exist (only a handful of processes do there).
    const tryer = start(["try-lock", file, "1500", "60000"], { via: inNamespace(), detached: true });
    const { code, stderr } = await tryer.exited;
    expect(code, stderr).toBe(0);
    expect(tryer.messages).toEqual([expect.objectContaining({ type: "lock-failed", code: "LOCK_TIMEOUT" })]);
    expect(tryer.messages[0]?.message).toContain(`pid ${pid}`);
  });

  it("a holder in another PID namespace whose pid does not exist here is not taken over at once; once it is gone, after the stale period", async () => {
    const file = await store();
    // A pid free here, for the holder to have inside its namespace.
    let wanted = 400;
    while (existsSync(`/proc/${wanted}`)) wanted++;
    const holder = start(["hold-lock", file], { via: inNamespace(wanted - 2), detached: true });
    const { pid } = (await holder.waitFor("locked")) as { pid: number };
    expect(existsSync(`/proc/${pid}`), `pid ${pid} of the holder's namespace exists here too: the test proves nothing`).toBe(false);

    const driver = new JSONFileStorageDriver({ path: file, lockTimeoutMs: 1_500, lockExpiryMs: 60_000 });
    cleanups.push(() => driver.close());
    await driver.initialize();
    const holderInfo = (await driver.describe()).lockHolder as Record<string, unknown>;
    expect(holderInfo).toMatchObject({ pid, bootId: readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() });
    expect(holderInfo.pidNamespace).toMatch(/^pid:\[\d+\]$/);
    expect(holderInfo.pidNamespace).not.toBe(OWN_PID_NAMESPACE);
    const error = await driver.acquireLock().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(TaskStoreError.hasCode(error, "LOCK_TIMEOUT"), String(error)).toBe(true);

    // Killed: its lock cannot be checked from here, so it goes after the stale period, not at once.
    signalGroup(holder, "SIGKILL");
    await holder.exited;
    const later = new JSONFileStorageDriver({ path: file, lockTimeoutMs: 30_000, lockExpiryMs: 2_000 });
    cleanups.push(() => later.close());
    await later.acquireLock();
    expect((await later.describe()).lockHolder).toMatchObject({ pid: process.pid, pidNamespace: OWN_PID_NAMESPACE });
    await later.releaseLock();
  });

  it("writers in two PID namespaces creating tasks at once lose none and double none", async () => {
    const file = await store();
    const outside = start(["create-n", file, "outside", "60"]);
    const inside = start(["create-n", file, "inside", "60"], { via: inNamespace(), detached: true });
    const ends = await Promise.all([outside.exited, inside.exited]);
    expect(ends.map(({ code, stderr }) => (code === 0 ? "" : stderr))).toEqual(["", ""]);
    const acked = [...outside.messages, ...inside.messages].filter((m) => m.type === "ack");
    expect(acked).toHaveLength(120);
    expect([...outside.messages, ...inside.messages].filter((m) => m.type === "persistence-error")).toEqual([]);
    const tasks = (await loadStore(file)).tasks;
    expect(tasks.map((task) => [task.id, task.title]).sort()).toEqual(acked.map((m) => [m.id, m.title]).sort());
  });

  it("a holder in another PID namespace stopped past the stale period in the middle of a write: after SIGCONT both writes are stored", async () => {
    await stalledHolder("append", { via: inNamespace() });
  });

  it("a holder in another PID namespace stopped past the stale period in the middle of a compaction: after SIGCONT both writes are stored", async () => {
    await stalledHolder("rename-store", { via: inNamespace() }, { compactionBytes: 0, compactionRatio: 0 });
  });
});
