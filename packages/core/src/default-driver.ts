import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { StorageDriver } from "./driver.js";
import { DriverNotInstalledError } from "./errors.js";
import { parseStoreUrl, type StoreSpec } from "./store-url.js";

/** Options of `openStoreDriver()`. */
export interface OpenStoreDriverOptions {
  /** Merged into the driver's options (for example `lockTimeoutMs`). */
  driverOptions?: Record<string, unknown>;
  /** Folders to resolve the driver package from first (for example the CLI's own). */
  resolveFrom?: string[];
}

/**
 * Opens the driver a store URL names (see `parseStoreUrl`): `undefined` or `""` is the JSON file
 * store at its default path. Driver packages are separate installs, so the package is looked up
 * at run time: from `resolveFrom`, core's own location, then the application's (its main script,
 * then the working folder). A package that is not installed is `DRIVER_NOT_INSTALLED`, naming it.
 */
export async function openStoreDriver(
  url: string | undefined,
  options: OpenStoreDriverOptions = {},
): Promise<{ driver: StorageDriver; spec: StoreSpec; module: Record<string, unknown> }> {
  const spec = parseStoreUrl(url);
  const purpose = url?.trim() ? `the ${spec.kind} store ${spec.display}` : "the default JSON file store";
  const module = (await importFirst(spec.packageName, options.resolveFrom ?? [])) as Record<string, unknown> | undefined;
  const Driver = module?.[spec.exportName] as (new (options: Record<string, unknown>) => StorageDriver) | undefined;
  if (typeof Driver !== "function") throw new DriverNotInstalledError(spec.packageName, purpose);
  return { driver: new Driver({ ...spec.options, ...options.driverOptions }), spec, module: module as Record<string, unknown> };
}

/**
 * The driver of `new TaskRepository()` without one: the store `url` names, else `TASKSTORE_URL`
 * (as the CLI), else the JSON file driver at its default path.
 */
export async function loadDefaultDriver(url?: string): Promise<StorageDriver> {
  const chosen = url ?? process.env.TASKSTORE_URL;
  try {
    return (await openStoreDriver(chosen)).driver;
  } catch (error) {
    if (error instanceof DriverNotInstalledError && !chosen?.trim()) {
      throw new DriverNotInstalledError(error.packageName, "new TaskRepository() without a driver (the default JSON file store)");
    }
    throw error;
  }
}

async function importFirst(specifier: string, first: string[]): Promise<unknown> {
  const bases = [...first];
  if (first.length === 0) {
    try {
      return await import(specifier);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
  bases.push(...[process.argv[1] ? path.dirname(path.resolve(process.argv[1])) : undefined, process.cwd()].filter((b): b is string => !!b));
  for (const base of bases) {
    let resolved: string;
    try {
      resolved = createRequire(path.join(base, "noop.js")).resolve(specifier);
    } catch {
      continue;
    }
    return import(pathToFileURL(resolved).href);
  }
  if (first.length > 0) {
    try {
      return await import(specifier);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
  return undefined;
}

function isNotFound(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code;
  return code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND";
}
