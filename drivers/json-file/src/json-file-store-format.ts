import { isLoadableStore, type StorageData } from "@taskstore/core";
import { errors } from "./json-file-errors.js";

/** Parses the store's bytes; the schema is core's business, but what is not a JSON object or array is corrupt. */
export function parseStore(bytes: Buffer, file: string): StorageData {
  // A byte order mark, as some editors add, is not an error.
  const text = bytes.toString("utf8").replace(/^\uFEFF/, "");
  if (text.trim() === "") throw errors.corrupt(`${file} is empty`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw errors.corrupt(`${file} is not valid JSON (truncated or damaged): ${(error as Error).message}`, error);
  }
  if (typeof parsed !== "object" || parsed === null)
    throw errors.corrupt(`${file} holds no store (a JSON ${parsed === null ? "null" : typeof parsed})`);
  return parsed as StorageData;
}

/** How every store this driver writes begins (compact JSON, `version` then `tasks`). */
const STORE_PREFIX = /^\{"version":"\d+\.\d+\.\d+[^"\\]*","tasks":\[/;

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * Whether `bytes` look like a taskstore store, damaged or not: what a symlinked `tasks.json` must
 * point to before the driver writes through it or restores a backup over it. A store that loads
 * (a legacy todo array too); a JSON object with a `x.y.z` `version`, a `tasks` array and a
 * `metadata` object (a store failing the schema); or text that does not parse but begins the way
 * this driver writes every store (`{"version":"1.0.0","tasks":[`, a truncated store). Not: an
 * empty file, other text, other JSON (a `.vscode/tasks.json` has `version` and `tasks` but no
 * `metadata`).
 */
export function looksLikeStore(bytes: Buffer): boolean {
  const text = bytes.toString("utf8").replace(/^\uFEFF/, "");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return STORE_PREFIX.test(text);
  }
  if (isLoadableStore(parsed)) return true;
  return (
    isPlainObject(parsed) &&
    typeof parsed.version === "string" &&
    /^\d+\.\d+\.\d+/.test(parsed.version) &&
    Array.isArray(parsed.tasks) &&
    isPlainObject(parsed.metadata)
  );
}
