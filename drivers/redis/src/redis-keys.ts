import { errors } from "./redis-errors.js";

/**
 * Prefixes may hold letters, digits and `_ - . : /`, up to 200 characters. Braces are refused:
 * every key is `{prefix}:...`, Redis hashes the text between the first `{` and the next `}`, and
 * a prefix without `}` ends exactly at that brace. So no two prefixes share a key (prefix `a`,
 * task `b` is `{a}:main:t:b`; prefix `a:b` only ever makes `{a:b}:...`), and one store lives in
 * one cluster slot.
 */
const PREFIX_PATTERN = /^[A-Za-z0-9_.:/-]{1,200}$/;

export function validatePrefix(prefix: string): string {
  if (typeof prefix !== "string" || !PREFIX_PATTERN.test(prefix)) {
    throw errors.validation([
      { path: ["prefix"], rule: "format", message: "must be 1-200 characters of A-Z, a-z, 0-9, '_', '-', '.', ':' or '/'" },
    ]);
  }
  return prefix;
}

/**
 * The keys of one namespace of a store: `main` (the live store), `backup`, or `aside:<stamp>` (a
 * store that `restore()` moved aside). Ids are `[A-Za-z0-9_-]` (core validates them), so
 * `t:<id>` and `l:<id>` cannot run into another key.
 */
export class SpaceKeys {
  readonly base: string;
  constructor(tag: string, space: string) {
    this.base = `${tag}:${space}:`;
  }
  /** A hash: `version`, `lastUpdated`, `extra` and `metaExtra` (JSON of unknown fields). */
  get meta(): string {
    return `${this.base}meta`;
  }
  /** A sorted set of task ids, scored by creation order. */
  get ids(): string {
    return `${this.base}ids`;
  }
  /** The counter that scores new ids. */
  get seq(): string {
    return `${this.base}seq`;
  }
  task(id: string): string {
    return `${this.base}t:${id}`;
  }
  log(id: string): string {
    return `${this.base}l:${id}`;
  }
}

/** Every key of one store. */
export class StoreKeys {
  /** `{prefix}`: the hash tag all keys share. */
  readonly tag: string;
  readonly main: SpaceKeys;
  readonly backup: SpaceKeys;
  /** Counts commits: loads use it to see a consistent store. Never moved by restore. */
  readonly rev: string;
  readonly lock: string;
  /** When the last backup was made (epoch ms). */
  readonly backupAt: string;
  /** The pub/sub channel each commit is announced on. */
  readonly channel: string;

  constructor(prefix: string) {
    this.tag = `{${validatePrefix(prefix)}}`;
    this.main = new SpaceKeys(this.tag, "main");
    this.backup = new SpaceKeys(this.tag, "backup");
    this.rev = `${this.tag}:rev`;
    this.lock = `${this.tag}:lock`;
    this.backupAt = `${this.tag}:backup-at`;
    this.channel = `${this.tag}:changes`;
  }

  /** The marker of one `transact()` commit: "1" applied, "void" settled as not applied (with a ttl). */
  tx(id: string): string {
    return `${this.tag}:tx:${id}`;
  }

  aside(stamp: string): SpaceKeys {
    return new SpaceKeys(this.tag, `aside:${stamp}`);
  }
}
