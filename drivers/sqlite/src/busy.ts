import { LockTimeoutError } from "@taskstore/core";

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

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `step` until it does not fail with SQLITE_BUSY. Each attempt already waited the busy
 * timeout inside SQLite; between attempts we wait asynchronously (so other work in this process,
 * such as another instance finishing its transaction, can run), until `timeoutMs` has passed.
 * SQLITE_BUSY itself never reaches the caller: it becomes a `LockTimeoutError`.
 */
export async function retryBusy<T>(step: () => T, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let delay = 5;
  for (;;) {
    try {
      return step();
    } catch (error) {
      if (!isBusy(error)) throw error;
      if (Date.now() >= deadline) {
        throw new LockTimeoutError(`sqlite: ${what}: the database stayed locked by another connection for ${timeoutMs} ms`, {
          cause: error,
        });
      }
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 200);
    }
  }
}

/**
 * Serializes work on one database file within this process. A transaction's work is async, so
 * without this a second instance's BEGIN IMMEDIATE would sit in SQLite's busy handler, blocking
 * the event loop that the first instance needs to reach COMMIT.
 */
export class Gate {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(work: () => Promise<T>): Promise<T> {
    const next = this.tail.then(work, work);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

const fileGates = new Map<string, Gate>();
/** Weak: a caller's database object, once dropped, takes its gate with it. */
const objectGates = new WeakMap<object, Gate>();

/** The gate of a database file (by absolute path) or of a caller's in-memory database (by object). */
export function gateFor(key: string | object): Gate {
  return typeof key === "string" ? gateIn(fileGates, key) : gateIn(objectGates, key);
}

function gateIn<K>(gates: { get(key: K): Gate | undefined; set(key: K, gate: Gate): unknown }, key: K): Gate {
  let gate = gates.get(key);
  if (!gate) {
    gate = new Gate();
    gates.set(key, gate);
  }
  return gate;
}
