import {
  capabilitiesOf,
  type DriverCapabilities,
  EventBus,
  type StorageDriver,
  TaskManager,
  TaskRepository,
  type TaskRepositoryOptions,
} from "@taskstore/core";

/** A fresh, isolated store made by the driver author's `setup()`. */
export interface ConformanceStore {
  /** A new, independent driver instance on this store (not yet initialized). May be called many times. */
  open(): Promise<StorageDriver>;
  /** Deletes the store and releases what `setup()` made. */
  teardown(): Promise<void>;
}

export interface ConformanceOptions {
  /** Shown in test names, e.g. "sqlite". */
  name: string;
  /** Makes a fresh, isolated store for one test. */
  setup(): Promise<ConformanceStore>;
  /** Tasks in the large-store test. Default 10,000. */
  largeStoreSize?: number;
  /** Per-test timeout in ms. Default 60,000. */
  timeoutMs?: number;
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

  private async openDriver(): Promise<StorageDriver> {
    if (!this.store) throw new Error("conformance: the store is not set up");
    return this.store.open();
  }
}
