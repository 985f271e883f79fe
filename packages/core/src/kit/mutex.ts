/**
 * Runs async work one piece at a time, in the order it was asked for: a promise chain, no timers.
 * A piece that fails does not stop the ones after it. For state a driver instance shares between
 * calls (a cached view of the store, one connection), and, kept in a module-level map, for a
 * resource several instances in one process share (a database file).
 */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `work` once everything queued before it has settled; resolves or rejects as `work` does. */
  run<T>(work: () => T | PromiseLike<T>): Promise<Awaited<T>> {
    const next = this.tail.then(work, work) as Promise<Awaited<T>>;
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** Resolves once everything queued so far has settled (never rejects). */
  idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }
}
