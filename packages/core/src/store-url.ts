import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ValidationError } from "./errors.js";

/**
 * A store URL that cannot be read (`--store`, `TASKSTORE_URL`, `new TaskRepository({ url })`):
 * `VALIDATION`, the issue at path `url` with rule `store_url`, and the plain sentence as message.
 */
export class StoreUrlError extends ValidationError {
  constructor(message: string) {
    super([{ path: ["url"], rule: "store_url", message }]);
    this.message = message;
    this.name = "StoreUrlError";
  }
}

/*
 * Store URLs, for the library and the CLI alike: `new TaskRepository()` honours `TASKSTORE_URL`
 * as `taskstore --store` does. A URL names a driver package, loaded only when it is used.
 */

/** The stores taskstore knows, by URL scheme. */
export type StoreKind = "file" | "sqlite" | "redis" | "s3" | "postgres";

/** What a store URL means: which driver package, which export, and the options to construct it with. */
export interface StoreSpec {
  kind: StoreKind;
  /** The npm package that holds the driver, loaded only when this store is used. */
  packageName: string;
  /** The driver class the package exports. */
  exportName: string;
  /** The options object for the driver's constructor. */
  options: Record<string, unknown>;
  /** The URL with any password replaced by `***`: the only form that is ever printed. */
  display: string;
}

interface Scheme {
  kind: StoreKind;
  packageName: string;
  exportName: string;
}

const SCHEMES: Record<string, Scheme> = {
  file: { kind: "file", packageName: "@taskstore/driver-json-file", exportName: "JSONFileStorageDriver" },
  sqlite: { kind: "sqlite", packageName: "@taskstore/driver-sqlite", exportName: "SQLiteStorageDriver" },
  redis: { kind: "redis", packageName: "@taskstore/driver-redis", exportName: "RedisStorageDriver" },
  rediss: { kind: "redis", packageName: "@taskstore/driver-redis", exportName: "RedisStorageDriver" },
  s3: { kind: "s3", packageName: "@taskstore/driver-s3", exportName: "S3StorageDriver" },
  postgres: { kind: "postgres", packageName: "@taskstore/driver-postgres", exportName: "PostgresStorageDriver" },
  postgresql: { kind: "postgres", packageName: "@taskstore/driver-postgres", exportName: "PostgresStorageDriver" },
};

/** The schemes a store URL may have, for help and error messages. */
export const SUPPORTED_SCHEMES = Object.keys(SCHEMES).map((scheme) => `${scheme}:`);

/** Query keys whose values are secrets: never printed. */
const SECRET_KEY = /pass|secret|token|credential|key/i;

/**
 * Turns `--store` / `TASKSTORE_URL` into a driver to load. `undefined` or an empty string is the
 * default JSON file store (at the driver's default path). A value without a scheme is a file path.
 *
 * - `file:/abs/tasks.json`, `file:./rel.json`, `file:~/tasks.json`, `file:///abs/tasks.json`
 * - `sqlite:/abs/db.sqlite` (same path forms)
 * - `redis://[user[:password]@]host[:port][/db][?prefix=name]`, `rediss://` for TLS
 * - `s3://bucket[/prefix][?endpoint=URL&region=R&forcePathStyle=true]` (credentials from the environment)
 * - `postgres://user[:password]@host[:port]/db[?schema=name]` (`postgresql:` too)
 */
export function parseStoreUrl(input: string | undefined, cwd: string = process.cwd(), home: string = os.homedir()): StoreSpec {
  const raw = (input ?? "").trim();
  if (raw === "") return { ...fileSpec(SCHEMES.file as Scheme, {}), display: "file: (default path)" };
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(raw);
  // No scheme, or a Windows drive letter ("C:\..."): a path to a JSON file.
  if (!match || /^[A-Za-z]:[\\/]/.test(raw)) {
    const file = resolvePath(raw, cwd, home);
    return { ...fileSpec(SCHEMES.file as Scheme, { path: file }), display: `file:${file}` };
  }
  const schemeName = (match[1] as string).toLowerCase();
  const scheme = SCHEMES[schemeName];
  if (!scheme) {
    throw new StoreUrlError(`unknown store scheme "${schemeName}:" in ${redactUrl(raw)}; supported: ${SUPPORTED_SCHEMES.join(" ")}`);
  }
  const rest = raw.slice(match[0].length);
  switch (scheme.kind) {
    case "file":
    case "sqlite": {
      const file = pathOf(raw, rest, cwd, home);
      return { ...fileSpec(scheme, { path: file }), display: `${schemeName}:${file}` };
    }
    case "redis":
      return redisSpec(scheme, raw);
    case "s3":
      return s3Spec(scheme, raw);
    case "postgres":
      return postgresSpec(scheme, raw);
  }
}

function fileSpec(scheme: Scheme, options: Record<string, unknown>): Omit<StoreSpec, "display"> {
  return { kind: scheme.kind, packageName: scheme.packageName, exportName: scheme.exportName, options };
}

/** `scheme:PATH` takes PATH literally; `scheme://...` is a standard file URL (percent-decoded). */
function pathOf(raw: string, rest: string, cwd: string, home: string): string {
  if (rest.startsWith("//")) {
    let url: URL;
    try {
      url = new URL(`file:${rest}`);
    } catch {
      throw new StoreUrlError(`cannot read the store URL ${raw}: write it as ${raw.split(":")[0]}:/absolute/path`);
    }
    if (url.hostname !== "" && url.hostname !== "localhost") {
      throw new StoreUrlError(
        `the store URL ${raw} names host "${url.hostname}": a file store must be local (write ${raw.split(":")[0]}:/path)`,
      );
    }
    const scheme = raw.split(":")[0];
    // A file name cannot hold a "/": fileURLToPath refuses it with a TypeError.
    if (/%2f/i.test(url.pathname)) {
      throw new StoreUrlError(`the store URL ${raw} must not contain an encoded "/" (%2F) in its path: write ${scheme}:/path/to/file`);
    }
    let file: string;
    try {
      file = fileURLToPath(url);
    } catch (error) {
      throw new StoreUrlError(`cannot read the store URL ${raw} (${(error as Error).message}): write it as ${scheme}:/absolute/path`);
    }
    if (file.includes("\0")) throw new StoreUrlError(`the store URL ${raw} has a NUL character (%00) in its path`);
    return file;
  }
  if (rest === "") throw new StoreUrlError(`the store URL ${raw} has no path: write it as ${raw}/path/to/file`);
  return resolvePath(rest, cwd, home);
}

function resolvePath(file: string, cwd: string, home: string): string {
  if (file === "~") return home;
  if (file.startsWith("~/")) return path.join(home, file.slice(2));
  return path.resolve(cwd, file);
}

function parseUrl(raw: string, example: string): URL {
  try {
    return new URL(raw);
  } catch {
    throw new StoreUrlError(`cannot read the store URL ${redactUrl(raw)}: expected a form like ${example}`);
  }
}

function redisSpec(scheme: Scheme, raw: string): StoreSpec {
  const url = parseUrl(raw, "redis://host:6379/0?prefix=name");
  if (!url.hostname) throw new StoreUrlError(`the store URL ${redactUrl(raw)} has no host: write redis://host:port`);
  const db = url.pathname.replace(/^\//, "");
  if (db !== "" && !/^\d+$/.test(db)) {
    throw new StoreUrlError(`the store URL ${redactUrl(raw)} names database "${db}": a Redis database is a number (redis://host:port/0)`);
  }
  const options: Record<string, unknown> = {};
  const prefix = url.searchParams.get("prefix");
  if (prefix !== null) {
    options.prefix = prefix;
    url.searchParams.delete("prefix");
  }
  // The rest of the URL (credentials, TLS by rediss:, other query parameters) goes to ioredis as is.
  options.url = url.toString();
  return { ...fileSpec(scheme, options), display: redactUrl(raw) };
}

function s3Spec(scheme: Scheme, raw: string): StoreSpec {
  const url = parseUrl(raw, "s3://bucket/prefix?endpoint=http://127.0.0.1:7480&region=us-east-1&forcePathStyle=true");
  if (url.username || url.password) {
    throw new StoreUrlError(
      "an s3: store URL takes no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment",
    );
  }
  const bucket = url.hostname;
  if (!bucket) throw new StoreUrlError(`the store URL ${redactUrl(raw)} has no bucket: write s3://bucket/prefix`);
  const prefix = decodeURIComponent(url.pathname.replace(/^\/+/, ""));
  const options: Record<string, unknown> = { bucket, ...(prefix ? { prefix } : {}), ...queryOptions(url) };
  // The SDK refuses to run without a region; S3-compatible servers ignore it.
  if (options.region === undefined && options.endpoint !== undefined && !process.env.AWS_REGION && !process.env.AWS_DEFAULT_REGION) {
    options.region = "us-east-1";
  }
  return { ...fileSpec(scheme, options), display: redactUrl(raw) };
}

function postgresSpec(scheme: Scheme, raw: string): StoreSpec {
  const url = parseUrl(raw, "postgres://user@host:5432/db?schema=name");
  const options: Record<string, unknown> = {};
  const schema = url.searchParams.get("schema");
  if (schema !== null) {
    options.schema = schema;
    url.searchParams.delete("schema");
  }
  // Everything else (sslmode, the password or PGPASSWORD) is for pg itself.
  options.connectionString = url.toString();
  return { ...fileSpec(scheme, options), display: redactUrl(raw) };
}

/** Query parameters as driver options: `true`/`false` and numbers become booleans and numbers. */
function queryOptions(url: URL): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const [key, value] of url.searchParams) {
    if (value === "true" || value === "false") options[key] = value === "true";
    else if (/^-?\d+(\.\d+)?$/.test(value)) options[key] = Number(value);
    else options[key] = value;
  }
  return options;
}

/**
 * The URL with its password (and any secret-looking query value) replaced by `***`. Used for
 * every URL that is printed, including inside error messages.
 */
export function redactUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return redactText(raw);
  }
  if (url.protocol === "file:" || !raw.includes("//")) return redactText(raw);
  if (url.password) url.password = "***";
  for (const key of [...url.searchParams.keys()]) {
    if (SECRET_KEY.test(key)) url.searchParams.set(key, "***");
  }
  return url.toString().replace(/%2A%2A%2A/g, "***");
}

/** Replaces `scheme://user:password@` inside free text (error messages, driver descriptions). */
export function redactText(text: string): string {
  return text.replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s:/@]*):[^\s@/]*@/g, "$1:***@");
}
