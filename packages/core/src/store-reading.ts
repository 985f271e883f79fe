import type { StorageDriver, StoreReader } from "./driver.js";
import { CorruptDataError, type TaskStoreError, toStoreError, VersionUnsupportedError } from "./errors.js";
import { isLegacyData, migrateLegacy } from "./legacy.js";
import { isPlainObject, isWritableVersion, parseStorageData, parseVersion, SCHEMA_VERSION, type StorageData } from "./schema.js";
import { SEALED_FIELD, SealingError } from "./sealing.js";
import { driverName, type StoreSession } from "./store-session.js";

/**
 * Reading the store the way every load does: a legacy todo array is migrated (the original
 * backed up first), an unreadable store is moved aside and its backup restored, a newer major
 * version is read as far as this version understands it, and sealed tasks are refused without
 * the keys.
 */
export class StoreReading {
  /** The store's version as last read or written. */
  storedVersion: string | undefined;

  constructor(
    private readonly session: StoreSession,
    /** Throws `CLOSED` once the repository is closed. */
    private readonly ensureOpen: () => void,
  ) {}

  /** Loads and interprets the store: migrates legacy data, recovers an unreadable store. */
  async read(): Promise<StorageData> {
    this.ensureOpen();
    await this.session.initialize();
    const driver = await this.session.driver();
    const raw = await this.session.metrics.time("load", () => this.loadRaw(driver));
    const interpreted = this.interpret(raw);
    if (interpreted.kind === "ok") return this.loaded(interpreted.data);
    // Legacy data or an unreadable store: fix it under the lock, after looking again.
    return this.session.withLock(async () => this.loaded(await this.readLocked()));
  }

  /** Reads while holding the lock, migrating or recovering as needed. */
  async readLocked(): Promise<StorageData> {
    const driver = await this.session.driver();
    const raw = await this.session.metrics.time("load", () => this.loadRaw(driver));
    const interpreted = this.interpret(raw);
    switch (interpreted.kind) {
      case "ok":
        return interpreted.data;
      case "legacy":
        await this.migrateLocked(raw);
        return this.interpretOrThrow(await this.loadRaw(driver));
      case "corrupt":
        return this.recoverLocked(interpreted.reason);
    }
  }

  /** Notes what a read or a write left in the store. */
  loaded(data: StorageData): StorageData {
    this.storedVersion = data.version;
    this.session.metrics.taskCount = data.tasks.length;
    return data;
  }

  /** Converts the legacy store in place. Caller holds the lock. */
  async migrateLocked(known?: unknown): Promise<{ migrated: number }> {
    const driver = await this.session.driver();
    const raw = known ?? (await driver.loadData());
    if (!isLegacyData(raw)) return { migrated: 0 };
    await driver.backup(); // the original, kept
    const data = migrateLegacy(raw);
    await this.session.metrics.time("save", () => driver.saveData(data));
    this.session.events.emit("storage:migrated", { tasks: data.tasks.length });
    return { migrated: data.tasks.length };
  }

  private async loadRaw(driver: StorageDriver): Promise<unknown> {
    try {
      return await driver.loadData();
    } catch (error) {
      const wrapped = toStoreError(error, `${driverName(driver)}: load`);
      // A CorruptDataError from the driver goes to recovery; anything else is a failure to report.
      if (wrapped.code === "CORRUPT_DATA") return new CorruptMarker(wrapped);
      this.session.record(wrapped, "load");
      throw wrapped;
    }
  }

  private interpret(raw: unknown): { kind: "ok"; data: StorageData } | { kind: "legacy" } | { kind: "corrupt"; reason: TaskStoreError } {
    if (raw instanceof CorruptMarker) return { kind: "corrupt", reason: raw.error };
    if (isLegacyData(raw)) return { kind: "legacy" };
    // A newer major version is read as it is, best effort, and never written or "recovered".
    const version = isPlainObject(raw) && typeof raw.version === "string" ? raw.version : undefined;
    const parsedVersion = version ? parseVersion(version) : undefined;
    if (version && parsedVersion && !isWritableVersion(version) && Array.isArray((raw as { tasks?: unknown }).tasks)) {
      return { kind: "ok", data: readNewerMajor(raw as Record<string, unknown>, version) };
    }
    let data: StorageData;
    try {
      data = parseStorageData(raw);
    } catch (error) {
      return {
        kind: "corrupt",
        reason: new CorruptDataError(`the store fails the schema: ${(error as Error).message}`, { cause: error }),
      };
    }
    if (!this.session.sealer) refuseSealed(data.tasks);
    return { kind: "ok", data };
  }

  private interpretOrThrow(raw: unknown): StorageData {
    const interpreted = this.interpret(raw);
    if (interpreted.kind === "ok") return interpreted.data;
    if (interpreted.kind === "corrupt") throw interpreted.reason;
    throw new CorruptDataError("the store is still in the legacy format after migration");
  }

  /** Moves an unreadable store aside and restores its backup. Caller holds the lock. */
  private async recoverLocked(reason: TaskStoreError): Promise<StorageData> {
    const driver = await this.session.driver();
    this.session.record(reason, "load");
    const { restore } = await this.session.runtime();
    if (!restore) {
      throw new CorruptDataError(
        `${driverName(driver)}: the store cannot be read and the driver cannot restore a backup: ${reason.message}`,
        {
          cause: reason,
        },
      );
    }
    const result = await restore();
    const data = this.interpretOrThrow(await this.loadRaw(driver));
    this.session.events.emit("storage:recovered", { reason, result });
    return data;
  }
}

/** A reader for `transact()` without sealing configured: a sealed task is one this process cannot read. */
export function refusingSealed(reader: StoreReader): StoreReader {
  return {
    version: () => reader.version(),
    get: async (id) => {
      const head = await reader.get(id);
      if (head && (head as Record<string, unknown>)[SEALED_FIELD] !== undefined) throw sealedWithoutKeys(id);
      return head;
    },
  };
}

/** Without sealing configured, a sealed task is one this process cannot read: `ENCRYPTION`, nothing written. */
function refuseSealed(tasks: readonly { id: string }[]): void {
  for (const task of tasks) {
    if ((task as Record<string, unknown>)[SEALED_FIELD] !== undefined) throw sealedWithoutKeys(task.id);
  }
}

function sealedWithoutKeys(id: string): SealingError {
  return new SealingError(
    `task ${id} is sealed (encrypted or compressed) and this repository has no sealing configured: give it the keys (sealing: { keys }, TASKSTORE_KEY or TASKSTORE_KEY_FILE); nothing was written`,
  );
}

/**
 * A store of a newer major version, read as far as this version understands it: each task must
 * still have the shape this version reads (unknown fields kept), or the read fails with
 * VERSION_UNSUPPORTED. Never CORRUPT_DATA: recovery would put an older backup over the newer store.
 */
function readNewerMajor(raw: Record<string, unknown>, version: string): StorageData {
  try {
    const parsed = parseStorageData({ ...raw, version: SCHEMA_VERSION });
    parsed.version = version;
    return parsed;
  } catch (error) {
    throw new VersionUnsupportedError(version, SCHEMA_VERSION, { unreadable: (error as Error).message, cause: error });
  }
}

/** Marks a driver's CorruptDataError as data for `interpret`, so recovery can handle it. */
class CorruptMarker {
  constructor(readonly error: TaskStoreError) {}
}
