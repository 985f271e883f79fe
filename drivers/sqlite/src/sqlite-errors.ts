import { driverErrors } from "@taskstore/core";
import { DB_SCHEMA_VERSION } from "./sqlite-migrations.js";

/** Core's errors, every message starting "sqlite: ". */
export const errors = driverErrors("sqlite");

/** SQLITE_BUSY and its extended codes: another connection holds the lock we need. */
export function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"));
}

/** The file is not a database, or its pages are damaged. */
export function isCorrupt(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code === "SQLITE_NOTADB" || code.startsWith("SQLITE_CORRUPT"));
}

/** SQLite's corruption codes become `CorruptDataError` (naming the file); everything else is returned as it is. */
export function translate(error: unknown, doing: string, path: string | undefined): unknown {
  if (!isCorrupt(error)) return error;
  return errors.corrupt(`${doing}: ${path ?? ":memory:"} is damaged: ${(error as Error).message}`, error);
}

/**
 * A database written by a newer version of this driver: it is never migrated down, nor written.
 * `VERSION_UNSUPPORTED`, not an outage: retrying cannot help, upgrading the driver does.
 */
export function newerSchemaError(version: number) {
  return errors.newerSchema(
    version,
    DB_SCHEMA_VERSION,
    `the database has schema version ${version}, newer than this driver's ${DB_SCHEMA_VERSION}: upgrade @taskstore/driver-sqlite`,
  );
}
