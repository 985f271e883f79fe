export { SQLiteStorageDriver, type SQLiteStorageDriverOptions, type SynchronousLevel } from "./sqlite-driver.js";
export { DB_SCHEMA_VERSION } from "./sqlite-migrations.js";
export { NotAStoreError } from "./sqlite-store-file.js";
