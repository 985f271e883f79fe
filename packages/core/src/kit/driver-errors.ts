import {
  ConflictError,
  CorruptDataError,
  LockTimeoutError,
  StorageUnavailableError,
  TaskStoreError,
  UnsupportedError,
  ValidationError,
  type ValidationIssue,
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
