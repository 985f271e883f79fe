import { type Stats, statSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import {
  DriverNotInstalledError,
  fileTypeOf,
  keysFromEnvironment,
  parseStoreUrl,
  type StorageDriver,
  type StoreSpec,
  TaskRepository,
  TaskStoreError,
} from "@taskstore/core";
import type { WriteGate } from "./interrupt.js";

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
  /** The command's writes, for an interrupt to wait for (or refuse): see `WriteGate`. */
  gate?: WriteGate | undefined;
}

/**
 * A store path that is not a regular file (a FIFO, a device, a folder, a socket): refused before any
 * driver opens it, since opening a FIFO waits for a writer forever and /dev/zero never ends.
 * `VALIDATION` (exit 2): the path given is wrong, and retrying cannot help.
 */
export class StorePathError extends TaskStoreError {
  readonly path: string;
  constructor(display: string, file: string, what: string) {
    super(
      "VALIDATION",
      `the store ${display} is ${what}, not a regular file: give the path of a store file (nothing was opened or written)`,
    );
    this.name = "StorePathError";
    this.path = file;
  }
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
  const file = storeFile(spec, module);
  if (file !== undefined) checkRegularFile(spec.kind === "file" ? `file:${file}` : spec.display, file);
  const driverOptions = { ...spec.options, ...(options.lockTimeoutMs !== undefined ? { lockTimeoutMs: options.lockTimeoutMs } : {}) };
  const driver = new Driver(driverOptions);
  const filePath = (driver as { path?: unknown }).path;
  const display = spec.kind === "file" && typeof filePath === "string" ? `file:${filePath}` : spec.display;
  try {
    options.gate?.watch(driver);
  } catch {
    // A driver whose methods cannot be wrapped (a frozen object): an interrupt then stops the
    // command without waiting for a write in flight, which is still atomic.
  }
  // A command's write that fails is reported by the write itself, never queued for a retry (that
  // is TaskManager's graceful degradation, for long-lived programs): queued, it would wait for the
  // lock again when the command closes (--lock-timeout twice over). A command has one deadline.
  return { repository: new TaskRepository({ driver, degrade: false, ...sealingFromEnvironment() }), driver, spec, display };
}

/** The file of a `file:` or `sqlite:` store (the JSON driver's default path when none is given); undefined for a server. */
export function storeFile(spec: StoreSpec, driverModule?: Record<string, unknown>): string | undefined {
  if (spec.kind !== "file" && spec.kind !== "sqlite") return undefined;
  if (typeof spec.options.path === "string") return spec.options.path;
  const defaultPath = driverModule?.defaultStorePath;
  return typeof defaultPath === "function" ? String((defaultPath as () => unknown)()) : undefined;
}

/** Loads the driver package of a store (see `importDriver`), for what it exports beside the driver. */
export function loadDriverModule(spec: StoreSpec): Promise<Record<string, unknown>> {
  return importDriver(spec);
}

/** Throws `StorePathError` when `file` exists (following symlinks) and is not a regular file. Never opens it. */
function checkRegularFile(display: string, file: string): void {
  let stats: Stats;
  try {
    stats = statSync(file);
  } catch {
    return; // missing (a new store), or unreadable: the driver reports that in its own terms
  }
  if (!stats.isFile()) throw new StorePathError(display, file, fileTypeOf(stats));
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

/**
 * Encryption at rest and compression, from the environment: `TASKSTORE_KEY_FILE` (one base64 key
 * per line, newest first) or `TASKSTORE_KEY`; `TASKSTORE_COMPRESS=1` compresses large values.
 */
function sealingFromEnvironment(env: NodeJS.ProcessEnv = process.env): { sealing?: { keys?: string[]; compress?: boolean } } {
  const keys = keysFromEnvironment(env);
  const compress = env.TASKSTORE_COMPRESS === "1" || env.TASKSTORE_COMPRESS === "true";
  if (!keys && !compress) return {};
  return { sealing: { ...(keys ? { keys } : {}), ...(compress ? { compress: true } : {}) } };
}
