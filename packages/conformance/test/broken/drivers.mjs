// Deliberately broken drivers: the suite must fail each of them (see ../broken.test.ts). Plain
// JavaScript, because the suite's child processes import them with plain Node. Each is a small
// file store (`store.json` in a folder, a lock file made with O_EXCL holding the holder's pid)
// with one thing wrong.
import { randomUUID } from "node:crypto";
import { link, mkdir, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { LockTimeoutError, SCHEMA_VERSION } from "@taskstore/core";

const empty = () => ({ version: SCHEMA_VERSION, tasks: [], metadata: { lastUpdated: 0, totalTasks: 0 } });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A correct six-method driver: the base the broken ones change one thing of. */
export class SoundFileDriver {
  name = "sound-file";
  capabilities = { locking: true, persistent: true };
  holding = false;
  constructor(dir) {
    this.dir = dir;
  }
  file(name) {
    return path.join(this.dir, name);
  }
  async initialize() {
    await mkdir(this.dir, { recursive: true });
  }
  async loadData() {
    try {
      return JSON.parse(await readFile(this.file("store.json"), "utf8"));
    } catch (error) {
      if (error.code === "ENOENT") return empty();
      throw error;
    }
  }
  async saveData(data) {
    const temp = this.file(`.tmp-${randomUUID()}`);
    const handle = await open(temp, "w");
    await handle.writeFile(JSON.stringify(data));
    await handle.sync();
    await handle.close();
    await rename(temp, this.file("store.json"));
  }
  async backup() {}
  async acquireLock() {
    const deadline = Date.now() + 10_000;
    // The pid is written first and linked into place, so a lock file always holds a whole pid.
    const record = this.file(`lock.${process.pid}.${randomUUID()}`);
    await writeFile(record, String(process.pid));
    for (;;) {
      try {
        await link(record, this.file("lock"));
        await rm(record, { force: true });
        this.holding = true;
        return;
      } catch (error) {
        if (error.code !== "EEXIST") throw error;
        const pid = Number(await readFile(this.file("lock"), "utf8").catch(() => "0"));
        if (pid && !alive(pid)) await rm(this.file("lock"), { force: true });
        if (Date.now() > deadline) throw new LockTimeoutError("sound-file: lock timeout");
        await sleep(5);
      }
    }
  }
  async releaseLock() {
    if (!this.holding) return;
    this.holding = false;
    await rm(this.file("lock"), { force: true });
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === "EPERM";
  }
}

/** Its lock excludes only instances inside one process. */
const localLocks = new Map();
export class ProcessLocalLockDriver extends SoundFileDriver {
  async acquireLock() {
    while (localLocks.has(this.dir)) await localLocks.get(this.dir);
    let release;
    localLocks.set(this.dir, new Promise((resolve) => (release = resolve)));
    this.release = release;
    this.holding = true;
  }
  async releaseLock() {
    if (!this.holding) return;
    this.holding = false;
    localLocks.delete(this.dir);
    this.release();
  }
}

/** Writes the store in two halves, with an await between. */
export class NonAtomicSaveDriver extends SoundFileDriver {
  async saveData(data) {
    const half = { ...data, tasks: data.tasks.slice(0, Math.ceil(data.tasks.length / 2)) };
    await writeFile(this.file("store.json"), JSON.stringify(half));
    await sleep(5);
    await writeFile(this.file("store.json"), JSON.stringify(data));
  }
}

/** Declares backup, and backup() does nothing. */
export class NoopBackupDriver extends SoundFileDriver {
  capabilities = { locking: true, persistent: true, backup: true };
}

/** Declares change notification; watch() never fires. */
export class SilentWatchDriver extends SoundFileDriver {
  capabilities = { locking: true, persistent: true, changeNotification: true };
  watch() {
    return () => undefined;
  }
}

/** loadData() serves the copy it read first, even after another process wrote. */
export class StaleLoadDriver extends SoundFileDriver {
  async loadData() {
    this.cached ??= await super.loadData();
    return structuredClone(this.cached);
  }
  async saveData(data) {
    await super.saveData(data);
    this.cached = structuredClone(data);
  }
}

/** Acknowledges saveData() at once and writes the file a little later: lost on SIGKILL. */
export class AckBeforeDurableDriver extends SoundFileDriver {
  async saveData(data) {
    const text = JSON.stringify(data);
    setTimeout(() => void writeFile(this.file("store.json"), text), 40);
  }
}
