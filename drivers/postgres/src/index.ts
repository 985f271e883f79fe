export { PostgresStorageDriver, type PostgresStorageDriverOptions } from "./postgres-driver.js";
export { DB_SCHEMA_VERSION, MIGRATIONS } from "./postgres-migrations.js";
