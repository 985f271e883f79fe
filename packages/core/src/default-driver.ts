import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { StorageDriver } from "./driver.js";
import { DriverNotInstalledError } from "./errors.js";

const DEFAULT_DRIVER_PACKAGE = "@taskstore/driver-json-file";

/**
 * Finds the default driver for `new TaskRepository()`: the JSON file driver at its default path.
 * Core does not depend on it (it is a separate install), so it is looked up at run time: from
 * core's own location, then from the application's (its main script, then the working folder).
 */
export async function loadDefaultDriver(): Promise<StorageDriver> {
  const module = await importFirst(DEFAULT_DRIVER_PACKAGE);
  const Driver = (module as { JSONFileStorageDriver?: new () => StorageDriver } | undefined)?.JSONFileStorageDriver;
  if (!Driver) {
    throw new DriverNotInstalledError(DEFAULT_DRIVER_PACKAGE, "new TaskRepository() without a driver (the default JSON file store)");
  }
  return new Driver();
}

async function importFirst(specifier: string): Promise<unknown> {
  try {
    return await import(specifier);
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  const bases = [process.argv[1] ? path.dirname(path.resolve(process.argv[1])) : undefined, process.cwd()];
  for (const base of bases) {
    if (!base) continue;
    let resolved: string;
    try {
      resolved = createRequire(path.join(base, "noop.js")).resolve(specifier);
    } catch {
      continue;
    }
    return import(pathToFileURL(resolved).href);
  }
  return undefined;
}

function isNotFound(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code;
  return code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND";
}
