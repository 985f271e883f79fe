import {
  capabilitiesOf,
  type DriverCapabilities,
  type RestoreResult,
  type StorageDriver,
  type StoreReader,
  type TransactOptions,
  type WriteSet,
} from "./driver.js";
import { UnsupportedError } from "./errors.js";

/**
 * What the repository may call on a driver, decided once from its manifest and its methods: a
 * flag declared without its method is a driver bug, reported when the repository first uses the
 * driver (`UNSUPPORTED`), instead of a silent fall back in one place and a crash in another.
 * (kysely's RuntimeDriver plays the same part.)
 */
export interface DriverRuntime {
  readonly capabilities: DriverCapabilities;
  /** The driver's `transact()`, when it declares `incremental`. */
  readonly transact: ((work: (reader: StoreReader) => Promise<WriteSet>, options?: TransactOptions) => Promise<void>) | undefined;
  /** The driver's `restore()`, when it declares `restore`. */
  readonly restore: (() => Promise<RestoreResult>) | undefined;
  /** The driver's `watch()`, when it declares `changeNotification`. */
  readonly watch: ((listener: () => void) => (() => void) | Promise<() => void>) | undefined;
}

const NEEDS: [flag: keyof DriverCapabilities, method: keyof StorageDriver][] = [
  ["incremental", "transact"],
  ["restore", "restore"],
  ["changeNotification", "watch"],
];

export function runtimeOf(driver: StorageDriver, name: string): DriverRuntime {
  const capabilities = capabilitiesOf(driver);
  for (const [flag, method] of NEEDS) {
    if (capabilities[flag] && typeof driver[method] !== "function") {
      throw new UnsupportedError(`${name}: the driver declares ${flag} but has no ${method}() (a bug in the driver)`);
    }
  }
  return {
    capabilities,
    transact: capabilities.incremental
      ? (work, options) => (driver.transact as NonNullable<StorageDriver["transact"]>).call(driver, work, options)
      : undefined,
    restore: capabilities.restore ? () => (driver.restore as () => Promise<RestoreResult>).call(driver) : undefined,
    watch: capabilities.changeNotification
      ? (listener) => (driver.watch as NonNullable<StorageDriver["watch"]>).call(driver, listener)
      : undefined,
  };
}
