import { Mutex, sleep } from "@taskstore/core";
import { errors, isBusy } from "./sqlite-errors.js";

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
        throw errors.lockTimeout(`${what}: the database stayed locked by another connection for ${timeoutMs} ms`, error);
      }
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 200);
    }
  }
}

/*
 * One gate per database file in this process, serializing the work of every instance on it. A
 * transaction's work is async, so without it a second instance's BEGIN IMMEDIATE would sit in
 * SQLite's busy handler, blocking the event loop that the first instance needs to reach COMMIT.
 */
const fileGates = new Map<string, Mutex>();
/** Weak: a caller's database object, once dropped, takes its gate with it. */
const objectGates = new WeakMap<object, Mutex>();

/** The gate of a database file (by absolute path) or of a caller's in-memory database (by object). */
export function gateFor(key: string | object): Mutex {
  return typeof key === "string" ? gateIn(fileGates, key) : gateIn(objectGates, key);
}

function gateIn<K>(gates: { get(key: K): Mutex | undefined; set(key: K, gate: Mutex): unknown }, key: K): Mutex {
  let gate = gates.get(key);
  if (!gate) {
    gate = new Mutex();
    gates.set(key, gate);
  }
  return gate;
}
