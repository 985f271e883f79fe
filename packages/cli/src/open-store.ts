import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { DriverNotInstalledError, type StorageDriver, TaskRepository } from "@taskstore/core";
import { parseStoreUrl, type StoreSpec } from "./store-url.js";

/** A store the CLI has opened: its repository, and the URL it may print. */
export interface OpenStore {
  repository: TaskRepository;
  driver: StorageDriver;
  spec: StoreSpec;
  /** The store as printed: the URL with credentials redacted. */
  display: string;
}

export interface OpenOptions {
  /** `lockTimeoutMs` for drivers that have one (every shipped driver does). */
  lockTimeoutMs?: number | undefined;
}

/** Loads the driver package for `url` (only now: drivers are optional installs) and wraps it in a repository. */
export async function openStore(url: string | undefined, options: OpenOptions = {}): Promise<OpenStore> {
  const spec = parseStoreUrl(url);
  const module = await importDriver(spec);
  const Driver = module[spec.exportName] as (new (options: Record<string, unknown>) => StorageDriver) | undefined;
  if (typeof Driver !== "function") {
    throw new DriverNotInstalledError(
      spec.packageName,
      `${spec.packageName} does not export ${spec.exportName} (an incompatible version?); the ${spec.kind} store`,
    );
  }
  const driverOptions = { ...spec.options, ...(options.lockTimeoutMs !== undefined ? { lockTimeoutMs: options.lockTimeoutMs } : {}) };
  const driver = new Driver(driverOptions);
  const filePath = (driver as { path?: unknown }).path;
  const display = spec.kind === "file" && typeof filePath === "string" ? `file:${filePath}` : spec.display;
  return { repository: new TaskRepository({ driver }), driver, spec, display };
}

/**
 * Imports the driver package: from where the CLI is installed (a global install finds drivers
 * installed globally beside it), then from the working folder (a project's own node_modules).
 */
async function importDriver(spec: StoreSpec): Promise<Record<string, unknown>> {
  let first: unknown;
  try {
    return (await import(spec.packageName)) as Record<string, unknown>;
  } catch (error) {
    if (!isNotFound(error)) throw error;
    first = error;
  }
  let resolved: string | undefined;
  try {
    resolved = createRequire(path.join(process.cwd(), "noop.js")).resolve(spec.packageName);
  } catch {
    resolved = undefined;
  }
  if (resolved) return (await import(pathToFileURL(resolved).href)) as Record<string, unknown>;
  const message = (first as Error).message ?? "";
  const purpose = message.includes(spec.packageName)
    ? `the ${spec.kind} store ${spec.display}`
    : `the ${spec.kind} store ${spec.display} (the installed package could not be loaded: ${message.split("\n")[0]})`;
  throw new DriverNotInstalledError(spec.packageName, purpose, { cause: first });
}

function isNotFound(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code;
  return code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND";
}
