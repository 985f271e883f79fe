import { randomUUID } from "node:crypto";
import { link, mkdir, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import path from "node:path";
import { DRIVER_SPECIFICATION_VERSION, driverErrors, emptyStore, type StorageData, type StorageDriver, sleep } from "@taskstore/core";

/** Core's errors, each message starting "folder: ". */
const errors = driverErrors("folder");

/**
 * A third-party-style driver with only the six required methods: the store is `store.json` in a
 * folder, `backup.json` beside it, and a lock file made with O_EXCL. The repository adds
 * everything else (change sets on the current state, validation, group commit, degradation).
 */
export class FolderStorageDriver implements StorageDriver {
  readonly name = "folder";
  /** The contract this driver was written against. */
  readonly specificationVersion = DRIVER_SPECIFICATION_VERSION;
  readonly capabilities = { locking: true, backup: true, persistent: true };
  private readonly token = randomUUID();
  private holding = false;

  constructor(
    private readonly dir: string,
    private readonly lockTimeoutMs = 10_000,
  ) {}

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  async initialize(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  async loadData(): Promise<StorageData> {
    let text: string;
    try {
      text = await readFile(this.file("store.json"), "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return emptyStore();
      throw error;
    }
    try {
      return JSON.parse(text);
    } catch (error) {
      throw errors.corrupt("store.json is not JSON", error);
    }
  }

  async saveData(data: StorageData): Promise<void> {
    // Write a new file and rename it over the old one: a reader sees one or the other.
    const temp = this.file(`.store-${randomUUID()}.tmp`);
    const handle = await open(temp, "wx", 0o600);
    try {
      await handle.writeFile(JSON.stringify(data));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, this.file("store.json"));
  }

  async backup(): Promise<void> {
    const data = await this.loadData();
    await writeFile(this.file("backup.json"), JSON.stringify(data), { mode: 0o600 });
  }

  async acquireLock(): Promise<void> {
    const deadline = Date.now() + this.lockTimeoutMs;
    // The holder's record is written first and linked into place: link() fails if a lock exists,
    // and a lock file always holds a whole record (a holder killed mid-write leaves no empty
    // lock that nobody could ever tell from a live one).
    const record = this.file(`lock.${this.token}`);
    await writeFile(record, JSON.stringify({ token: this.token, pid: process.pid, host: hostname() }), { mode: 0o600 });
    for (;;) {
      try {
        await link(record, this.file("lock"));
        await rm(record, { force: true });
        this.holding = true;
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      if (await this.holderIsGone()) {
        await rm(this.file("lock"), { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        await rm(record, { force: true });
        throw errors.lockTimeout(`${this.file("lock")} is held by another process`);
      }
      await sleep(5);
    }
  }

  async releaseLock(): Promise<void> {
    if (!this.holding) return;
    this.holding = false;
    await rm(this.file("lock"), { force: true });
  }

  async close(): Promise<void> {
    await this.releaseLock();
  }

  /** A lock left by a process of this host that no longer runs is stale. */
  private async holderIsGone(): Promise<boolean> {
    try {
      const holder = JSON.parse(await readFile(this.file("lock"), "utf8"));
      if (holder.host !== hostname()) return false;
      process.kill(holder.pid, 0);
      return false;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === "ESRCH";
    }
  }
}
