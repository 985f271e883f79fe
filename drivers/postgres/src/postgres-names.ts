import { errors } from "./postgres-errors.js";

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,39}$/;
/** `classid` of the advisory locks: "tsks" for the store's write lock, "tskm" for migrations. */
export const STORE_LOCK_CLASS = 0x74736b73;
const MIGRATION_LOCK_CLASS = 0x74736b6d;

/**
 * The names one store uses in the database, all made from its schema name (the way Redis keys are
 * made from a prefix): the schema, its backup schema, the NOTIFY channel, the advisory lock keys
 * and the names of prepared statements.
 */
export class StoreNames {
  /** The schema name as given, e.g. `taskstore`. */
  readonly schema: string;
  /** The schema quoted for SQL: `"taskstore"`. */
  readonly s: string;
  /** The backup's schema, quoted: `"taskstore__backup"`. */
  readonly backup: string;
  /** The LISTEN/NOTIFY channel. */
  readonly channel: string;
  /** `objid` of the store's advisory locks. */
  readonly lockId: number;
  /** `classid, objid` of the store's write lock, as SQL. */
  readonly storeLock: string;
  /** `classid, objid` of the migration lock, as SQL. */
  readonly migrationLock: string;

  constructor(schema: string) {
    if (!SCHEMA_NAME.test(schema) || schema.includes("__")) {
      throw errors.validation([
        { path: ["schema"], rule: "identifier", message: "must be 1-40 of a-z, 0-9, '_', not starting with a digit, without '__'" },
      ]);
    }
    this.schema = schema;
    this.s = `"${schema}"`;
    this.backup = `"${schema}__backup"`;
    this.channel = `taskstore:${schema}`;
    this.lockId = hash(schema);
    this.storeLock = `${STORE_LOCK_CLASS}, ${this.lockId}`;
    this.migrationLock = `${MIGRATION_LOCK_CLASS}, ${this.lockId}`;
  }

  /** Where `restore()` moves the current store: `<schema>__aside_<epoch ms>` (unquoted). */
  aside(at: number): string {
    return `${this.schema}__aside_${at}`;
  }

  /**
   * The name of a hot statement, prepared once per connection (node-postgres caches it by name).
   * Per schema, since a caller's pool may serve several stores. A restore renames the schema;
   * PostgreSQL then re-plans the statements against the new tables.
   */
  statement(kind: string): string {
    return `taskstore_${kind}_${this.lockId.toString(36)}`;
  }
}

/** A stable 31-bit FNV-1a hash of the schema name: the `objid` of its advisory locks. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) & 0x7fffffff;
}
