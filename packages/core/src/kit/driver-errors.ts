import {
  ConflictError,
  CorruptDataError,
  LockTimeoutError,
  StorageUnavailableError,
  TaskStoreError,
  UnsupportedError,
  ValidationError,
  type ValidationIssue,
  VersionUnsupportedError,
} from "../errors.js";

/**
 * Core's errors with one driver's name in front of every message (`"sqlite: ..."`), so a reader
 * of a log or a `diagnose` report knows which backend spoke. Codes and `cause` are core's as ever.
 */
export interface DriverErrors {
  /** The name the messages start with, as the driver's `name`. */
  readonly driver: string;
  /** `"<driver>: <text>"`. */
  message(text: string): string;
  /** `CORRUPT_DATA`: stored data that cannot be read as a store. */
  corrupt(text: string, cause?: unknown): CorruptDataError;
  /** `STORAGE_UNAVAILABLE`: the backend failed or could not be reached; core retries it. */
  unavailable(text: string, cause?: unknown): StorageUnavailableError;
  /** `LOCK_TIMEOUT`: the store's lock was not granted in time. */
  lockTimeout(text: string, cause?: unknown): LockTimeoutError;
  /** `CONFLICT`: optimistic concurrency gave up. */
  conflict(text: string, cause?: unknown): ConflictError;
  /** `UNSUPPORTED`: the driver cannot do what was asked (in this configuration). */
  unsupported(text: string): UnsupportedError;
  /** `VALIDATION`, the message starting `"<driver>: invalid input: ..."`. */
  validation(issues: ValidationIssue[], cause?: unknown): ValidationError;
  /** `VALIDATION` for one bad option (path `[option]`, rule `option`): what a constructor throws, never a `TypeError`. */
  invalidOption(option: string, text: string): ValidationError;
  /**
   * `VERSION_UNSUPPORTED`: the backend's own schema (tables, layout) is at `found`, newer than the
   * `supported` one of this driver, which never migrates it down nor writes it. Not an outage:
   * core does not retry it. `text` says what to upgrade.
   */
  newerSchema(found: number | string, supported: number | string, text: string): VersionUnsupportedError;
  /**
   * A taskstore error as it is; anything else (a client library's error) as `STORAGE_UNAVAILABLE`,
   * `"<driver>: <doing> failed: <detail>"`, the original kept as `cause`. `detail` defaults to
   * the error's message.
   */
  wrap(error: unknown, doing: string, detail?: string): TaskStoreError;
  /** Runs `work`, passing what it throws through `wrap(error, doing)`. */
  guard<T>(doing: string, work: () => Promise<T>): Promise<T>;
  /** `JSON.parse(text)`; text that is not JSON is `CORRUPT_DATA`, `"<driver>: <what> is not valid JSON"`. */
  parseJson(text: string, what: string): unknown;
}

/** The error factories of the driver called `driver` (see `DriverErrors`). */
export function driverErrors(driver: string): DriverErrors {
  const message = (text: string) => `${driver}: ${text}`;
  const withCause = (cause: unknown) => (cause === undefined ? undefined : { cause });
  const wrap = (error: unknown, doing: string, detail?: string): TaskStoreError => {
    if (TaskStoreError.isInstance(error)) return error;
    const text = detail ?? (error instanceof Error ? error.message : String(error));
    return new StorageUnavailableError(message(`${doing} failed: ${text}`), { cause: error });
  };
  return {
    driver,
    message,
    corrupt: (text, cause) => new CorruptDataError(message(text), withCause(cause)),
    unavailable: (text, cause) => new StorageUnavailableError(message(text), withCause(cause)),
    lockTimeout: (text, cause) => new LockTimeoutError(message(text), withCause(cause)),
    conflict: (text, cause) => new ConflictError(message(text), withCause(cause)),
    unsupported: (text) => new UnsupportedError(message(text)),
    validation: (issues, cause) => new ValidationError(issues, { subject: driver, ...withCause(cause) }),
    invalidOption: (option, text) => new ValidationError([{ path: [option], rule: "option", message: text }], { subject: driver }),
    newerSchema(found, supported, text) {
      const error = new VersionUnsupportedError(String(found), String(supported), { unreadable: text });
      // The store's data may be of any version: what is too new is this driver's own layout.
      error.message = message(text);
      return error;
    },
    wrap,
    async guard(doing, work) {
      try {
        return await work();
      } catch (error) {
        throw wrap(error, doing);
      }
    },
    parseJson(text, what) {
      try {
        return JSON.parse(text);
      } catch (error) {
        throw new CorruptDataError(message(`${what} is not valid JSON`), { cause: error });
      }
    },
  };
}
