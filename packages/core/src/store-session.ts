import { loadDefaultDriver } from "./default-driver.js";
import type { StorageDriver } from "./driver.js";
import { type TaskStoreError, toStoreError } from "./errors.js";
import { EventBus, type TaskEvents } from "./event-bus.js";
import { Metrics } from "./metrics.js";
import { type DriverRuntime, runtimeOf } from "./runtime-driver.js";
import { SealedDriver } from "./sealed-driver.js";
import type { Sealer } from "./sealing.js";
import type { UnwrittenErrors } from "./store-errors.js";
import { openTelemetry } from "./telemetry.js";

/**
 * The driver as the parts of a repository share it (kysely's RuntimeDriver plays the same part):
 * found once (a default driver asynchronously), sealed when sealing is configured, its manifest
 * decided once, initialized once; the two turns sections take (the lock's and the store I/O's);
 * and the metrics, events and errors every part records into.
 */
export class StoreSession {
  readonly events = new EventBus<TaskEvents>();
  readonly metrics = new Metrics();
  private driverInstance: StorageDriver | undefined;
  private sealedDriver: SealedDriver | undefined;
  private runtimeFor: { driver: StorageDriver; runtime: DriverRuntime } | undefined;
  private readonly driverPromise: Promise<StorageDriver> | undefined;
  private initializing: Promise<void> | undefined;
  private io: Promise<unknown> = Promise.resolve();
  private locked: Promise<unknown> = Promise.resolve();

  constructor(
    given: { driver?: StorageDriver; url?: string },
    /** Encryption and compression, when configured: the driver is then wrapped in a SealedDriver. */
    readonly sealer: Sealer | undefined,
    /** This process's storage errors not yet written with the store (`recordErrors`). */
    readonly unwrittenErrors: UnwrittenErrors | undefined,
    /** How many change sets wait for storage, for the OpenTelemetry gauge. */
    private readonly pendingCount: () => number,
  ) {
    if (given.driver) this.driverInstance = given.driver;
    else this.driverPromise = loadDefaultDriver(given.url);
    // A missing default driver is reported on first use, not as an unhandled rejection now.
    this.driverPromise?.catch(() => undefined);
  }

  /** The driver as given or found, without the sealing wrapper (what `close()` closes), once known. */
  get rawDriver(): StorageDriver | undefined {
    return this.driverInstance;
  }

  /** The driver the repository talks to (sealed when sealing is configured). */
  async driver(): Promise<StorageDriver> {
    if (!this.driverInstance) this.driverInstance = await (this.driverPromise as Promise<StorageDriver>);
    if (!this.sealer) return this.driverInstance;
    this.sealedDriver ??= new SealedDriver(this.driverInstance, this.sealer);
    return this.sealedDriver;
  }

  /** What the driver can do, decided once (see runtime-driver.ts). */
  async runtime(): Promise<DriverRuntime> {
    const driver = await this.driver();
    if (this.runtimeFor?.driver !== driver) this.runtimeFor = { driver, runtime: runtimeOf(driver, driverName(driver)) };
    return this.runtimeFor.runtime;
  }

  /** Initializes the driver, once. A failed initialization is tried again on the next call. */
  initialize(): Promise<void> {
    if (!this.initializing) {
      this.initializing = (async () => {
        const driver = await this.driver();
        await this.runtime(); // a manifest its methods do not back is refused before anything else
        driver.attach?.({
          warn: (error) => {
            const wrapped = toStoreError(error, driverName(driver));
            // A warning, not a failed operation: kept for this process's diagnose only, since
            // writing it with the store could itself warn again (a folder that cannot be synced).
            this.metrics.recordError(wrapped, "background");
            this.events.emit("storage:warning", { error: wrapped });
          },
        });
        await driver.initialize();
        this.metrics.sink ??= await openTelemetry(driverName(driver), {
          pendingChanges: this.pendingCount,
          taskCount: () => this.metrics.taskCount,
        });
      })();
      this.initializing.catch(() => {
        this.initializing = undefined;
      });
    }
    return this.initializing;
  }

  /**
   * Runs `work` holding the driver's lock. Sections of this repository take turns first: a
   * driver's lock is per instance (a second acquireLock() by its holder may return at once), so
   * without the turn a recovery and a restore in one process could both "hold" it and the first
   * release would free it under the second.
   */
  withLock<T>(work: () => Promise<T>): Promise<T> {
    const section = async () => {
      await this.initialize();
      const driver = await this.driver();
      await driver.acquireLock();
      try {
        return await work();
      } finally {
        await driver.releaseLock().catch((error) => this.record(toStoreError(error, `${driverName(driver)}: releaseLock`), "releaseLock"));
      }
    };
    const next = this.locked.then(section, section);
    this.locked = next.catch(() => undefined);
    return next;
  }

  /** Runs `work` when no write batch or snapshot is in flight. */
  serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.io.then(work, work);
    this.io = next.catch(() => undefined);
    return next;
  }

  /** Counts an error for the metrics and keeps it to be written with the store (when it is about storage). */
  record(error: TaskStoreError, operation: string): void {
    this.metrics.recordError(error, operation);
    this.unwrittenErrors?.note(error, operation);
  }
}

/** A driver's name for messages and `diagnose`. */
export function driverName(driver: StorageDriver | undefined): string {
  return driver?.name ?? driver?.constructor?.name ?? "driver";
}
