import {
  capabilitiesOf,
  type DriverCapabilities,
  EventBus,
  type StorageDriver,
  TaskManager,
  TaskRepository,
  type TaskRepositoryOptions,
} from "@taskstore/core";
import type { ChildDriver } from "./child-driver.js";

/** A fresh, isolated store made by the driver author's `setup()`. */
export interface ConformanceStore {
  /** A new, independent driver instance on this store (not yet initialized). May be called many times. */
  open(): Promise<StorageDriver>;
  /** Deletes the store and releases what `setup()` made. */
  teardown(): Promise<void>;
  /**
   * How a child process opens this same store (a module and JSON arguments). The process groups
   * (workload, locking across processes, SIGKILL, torn reads, watching) need it; without it they
   * fail and say so, unless the suite's options say `processes: false`.
   */
  child?: ChildDriver;
  /** Restarts the server behind the store (where the harness can), for the reopening group. */
  restart?(): Promise<void>;
  /**
   * Reads the last backup as the store's data, for a driver that declares `backup` but not
   * `restore`: the suite must be able to check a backup somehow.
   */
  readBackup?(): Promise<unknown>;
  /**
   * The backend's raw bytes for this store (the file, every key's value, every object, every row
   * as text), for the sealing group's check that no plaintext reaches the backend.
   */
  readRaw?(): Promise<string | Uint8Array>;
}

/** The suite's groups, by name; `groups` in the options runs some of them alone. */
export const GROUP_NAMES = [
  "lifecycle",
  "round-trip",
  "save-remove",
  "manager",
  "locking",
  "concurrency",
  "backup",
  "validation",
  "compat",
  "scale",
  "processes",
  "crashes",
  "atomicity",
  "watching",
  "reopening",
  "sealing",
  "incremental-backup",
  "errors",
] as const;
export type GroupName = (typeof GROUP_NAMES)[number];

export interface ConformanceOptions {
  /** Shown in test names, e.g. "sqlite". */
  name: string;
  /** Makes a fresh, isolated store for one test. */
  setup(): Promise<ConformanceStore>;
  /** Tasks in the large-store test. Default 10,000. */
  largeStoreSize?: number;
  /** Per-test timeout in ms. Default 60,000 (120,000 for the process groups). */
  timeoutMs?: number;
  /**
   * Settings of the process groups, or `false` for a driver whose stores live inside one process
   * (they are then reported as skipped, with that reason).
   */
  processes?: false | ProcessOptions;
  /** Run only these groups (default: all). */
  groups?: GroupName[];
}

export interface ProcessOptions {
  /** Child processes in the mixed workload. Default 4. */
  workers?: number;
  /** TaskManager calls per worker. Default 60. */
  operations?: number;
  /** SIGKILLs of a writer in the crash group. Default 20. */
  kills?: number;
  /** Tasks in each store the atomicity group writes. Default 1,000. */
  atomicStoreSize?: number;
  /**
   * The longest your driver documents for taking over the lock of a holder that died (a lock's
   * expiry or lease). Writes after a SIGKILL are retried on LOCK_TIMEOUT until then. Default 30,000.
   */
  lockTakeoverMs?: number;
}

/** What each test gets: the store, and helpers that close everything they open. */
export class Harness {
  private store: ConformanceStore | undefined;
  private readonly repositories: TaskRepository[] = [];
  private readonly drivers: StorageDriver[] = [];
  private caps: DriverCapabilities | undefined;

  constructor(readonly options: ConformanceOptions) {}

  async begin(): Promise<void> {
    this.store = await this.options.setup();
  }

  async end(): Promise<void> {
    const repositories = this.repositories.splice(0);
    await Promise.all(repositories.map((repository) => repository.close().catch(() => undefined)));
    const drivers = this.drivers.splice(0);
    await Promise.all(drivers.map((driver) => driver.close?.().catch(() => undefined)));
    const store = this.store;
    this.store = undefined;
    await store?.teardown();
  }

  /** A raw driver instance on the store, initialized; closed after the test. */
  async driver(): Promise<StorageDriver> {
    const driver = await this.openDriver();
    this.drivers.push(driver);
    await driver.initialize();
    return driver;
  }

  /** A repository over a new driver instance; closed after the test. */
  async repository(
    options: Omit<TaskRepositoryOptions, "driver"> = {},
    wrap?: (driver: StorageDriver) => StorageDriver,
  ): Promise<TaskRepository> {
    const driver = await this.openDriver();
    const repository = new TaskRepository({ ...options, driver: wrap ? wrap(driver) : driver });
    this.repositories.push(repository);
    await repository.initialize();
    return repository;
  }

  /** A loaded TaskManager over a new driver instance. */
  async manager(options: Omit<TaskRepositoryOptions, "driver"> = {}): Promise<TaskManager> {
    const manager = new TaskManager(new EventBus(), await this.repository(options));
    await manager.loadFromRepository();
    return manager;
  }

  /** The driver's manifest (read once from a fresh instance). */
  async capabilities(): Promise<DriverCapabilities> {
    if (!this.caps) {
      const driver = await this.openDriver();
      this.caps = capabilitiesOf(driver);
      await driver.close?.().catch(() => undefined);
    }
    return this.caps;
  }

  /** The child-process descriptor of the store; throws, saying what to give, when there is none. */
  child(): ChildDriver {
    const child = this.store?.child;
    if (!child) {
      throw new Error(
        `conformance: ${this.options.name}: setup() returned no \`child\` descriptor, so the suite cannot open the store from another process. ` +
          "Return { child: { module, export, args } } from setup(), or pass processes: false for a store that lives inside one process.",
      );
    }
    return child;
  }

  /** The store as `setup()` made it. */
  get current(): ConformanceStore {
    if (!this.store) throw new Error("conformance: the store is not set up");
    return this.store;
  }

  /** The process-group settings with their defaults. */
  get processOptions(): Required<ProcessOptions> {
    const given = this.options.processes || {};
    return {
      workers: given.workers ?? 4,
      operations: given.operations ?? 60,
      kills: given.kills ?? 20,
      atomicStoreSize: given.atomicStoreSize ?? 1_000,
      lockTakeoverMs: given.lockTakeoverMs ?? 30_000,
    };
  }

  private async openDriver(): Promise<StorageDriver> {
    if (!this.store) throw new Error("conformance: the store is not set up");
    return this.store.open();
  }
}
