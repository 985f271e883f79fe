export type { BackupPoint } from "./backups/chain-format.js";
export {
  type BackupResult,
  type IncrementalBackupOptions,
  IncrementalBackups,
  type PointRestoreResult,
} from "./backups/incremental-backups.js";
export { DEFAULT_KEEP, type RetentionRule } from "./backups/retention.js";
export { type ApplyReport, ChangeApplier, type PatchableFields, type TaskChange } from "./changes.js";
export { type OpenStoreDriverOptions, openStoreDriver } from "./default-driver.js";
export {
  capabilitiesOf,
  DRIVER_SPECIFICATION_VERSION,
  type DriverCapabilities,
  type DriverContext,
  type DriverDescription,
  type LogWrite,
  NO_CAPABILITIES,
  type RestoreResult,
  type StorageDriver,
  type StoreReader,
  type TransactOptions,
  type WriteSet,
} from "./driver.js";
export {
  ClosedError,
  ConflictError,
  CorruptDataError,
  CycleError,
  DriverNotInstalledError,
  type ErrorCode,
  InvalidTransitionError,
  isLogicalError,
  LockTimeoutError,
  StorageUnavailableError,
  TaskNotFoundError,
  TaskStoreError,
  toStoreError,
  UnsupportedError,
  ValidationError,
  type ValidationIssue,
  VersionUnsupportedError,
} from "./errors.js";
export { EventBus, type TaskEventListener, type TaskEventName, type TaskEvents } from "./event-bus.js";
export { newTaskId } from "./ids.js";
export { type DriverErrors, driverErrors } from "./kit/driver-errors.js";
export { emptyStore } from "./kit/empty-store.js";
export { type FileTypeStats, fileTypeOf } from "./kit/file-type.js";
export { Mutex } from "./kit/mutex.js";
export { type DeprecatedAlias, type NumberRule, numberOption, resolveOption } from "./kit/options.js";
export { sleep } from "./kit/sleep.js";
export { joinStore, type StoreEnvelope, splitStore, taskBody } from "./kit/store-envelope.js";
export { newerVersion, parseVersion } from "./kit/version.js";
export { isLegacyData, isLoadableStore, type LegacyTodo, type MigrateLegacyOptions, migrateLegacy } from "./legacy.js";
export { MemoryStorageDriver, type MemoryStorageDriverOptions } from "./memory-driver.js";
export type { MeasuredOperation, MetricsSnapshot, OperationStats, RecordedError } from "./metrics.js";
export {
  type ApplyOptions,
  type ApplyResult,
  type Diagnostics,
  TaskRepository,
  type TaskRepositoryOptions,
} from "./repository.js";
export {
  isWritableVersion,
  LIMITS,
  type LogEntry,
  LogEntrySchema,
  type LogType,
  LogTypeSchema,
  MetadataSchema,
  parseStorageData,
  parseStoredTask,
  SCHEMA_VERSION,
  type StorageData,
  StorageDataSchema,
  type StoredTask,
  StoredTaskSchema,
  type TaskBody,
  type TaskHead,
  TaskIdSchema,
  type TaskProgress,
  TaskProgressSchema,
  type TaskStatus,
  TaskStatusSchema,
} from "./schema.js";
export { keysFromEnvironment, SEALED_FIELD, SealingError, type SealingOptions } from "./sealing.js";
export { RECENT_ERRORS_KEY, type StoredError } from "./store-errors.js";
export {
  parseStoreUrl,
  redactText,
  redactUrl,
  type StoreKind,
  type StoreSpec,
  StoreUrlError,
  SUPPORTED_SCHEMES,
} from "./store-url.js";
export { TaskTable } from "./table.js";
export {
  type CreateTaskInput,
  TaskManager,
  type TaskQuery,
  TRANSITIONS,
  type UpdateTaskInput,
} from "./task-manager.js";
