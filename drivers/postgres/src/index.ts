export { DB_SCHEMA_VERSION, MIGRATIONS } from "./migrations.js";
export { PostgresStorageDriver, type PostgresStorageDriverOptions } from "./postgres-driver.js";
