export { DB_SCHEMA_VERSION } from "./migrations.js";
export { SQLiteStorageDriver, type SQLiteStorageDriverOptions, type SynchronousLevel } from "./sqlite-driver.js";
export { NotAStoreError } from "./store-file.js";
