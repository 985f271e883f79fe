import type { StorageDriver, WriteSet } from "@taskstore/core";

/** The signals that ask a command to stop, and the exit code of a command they stopped (128 + the signal's number). */
export const STOP_SIGNALS = { SIGINT: 130, SIGTERM: 143 } as const;
export type StopSignal = keyof typeof STOP_SIGNALS;

/** A write refused because the command was interrupted (the user asked it to stop). */
export class InterruptedError extends Error {
  readonly code = "INTERRUPTED";
  constructor() {
    super("the command was interrupted");
    this.name = "InterruptedError";
  }
}

/**
 * The writes of one command, seen from its drivers: a write holds the store's lock (or runs in the
 * driver's transaction) from the moment it may change the store until it is done. When the user
 * interrupts the command, `stop()` refuses any write not begun yet, and `idle()` waits for the one
 * in flight, if any, to finish: stopping then can never leave half a change (every driver's write
 * is atomic anyway), and the command can say whether anything was written.
 */
export class WriteGate {
  private active = 0;
  private waiters: (() => void)[] = [];
  private isStopped = false;
  /** Write sections that finished, each of which may have changed the store. */
  finished = 0;

  get stopped(): boolean {
    return this.isStopped;
  }

  /** Enters a write section; throws `InterruptedError` once stopped. */
  begin(): void {
    if (this.isStopped) throw new InterruptedError();
    this.active++;
  }

  end(wrote: boolean): void {
    this.active = Math.max(0, this.active - 1);
    if (wrote) this.finished++;
    if (this.active === 0) for (const wake of this.waiters.splice(0)) wake();
  }

  stop(): void {
    this.isStopped = true;
  }

  /** Resolves when no write section is in flight. */
  idle(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * Makes `driver` report its write sections to this gate: the time it holds its lock
   * (`acquireLock` to `releaseLock`), its `transact()` from the moment its work runs, and
   * `backup()`. Once stopped, a lock acquired is released at once and the write refused.
   */
  watch(driver: StorageDriver): void {
    const acquire = driver.acquireLock.bind(driver);
    const release = driver.releaseLock.bind(driver);
    let transacting = 0;
    let held = 0;
    driver.acquireLock = async () => {
      if (this.isStopped) throw new InterruptedError();
      await acquire();
      if (this.isStopped) {
        await release().catch(() => undefined);
        throw new InterruptedError();
      }
      // A lock taken inside transact() is that transaction's section, counted there.
      if (transacting === 0) {
        held++;
        this.begin();
      }
    };
    driver.releaseLock = async () => {
      try {
        await release();
      } finally {
        if (held > 0 && transacting === 0) {
          held--;
          this.end(true);
        }
      }
    };
    if (driver.transact) {
      const transact = driver.transact.bind(driver);
      driver.transact = async (work) => {
        let entered = false;
        let wrote = false;
        transacting++;
        try {
          await transact(async (reader) => {
            if (!entered) {
              this.begin();
              entered = true;
            } else if (this.isStopped) throw new InterruptedError(); // a retry after a conflict: nothing was written yet
            const writes = await work(reader);
            wrote = !isEmpty(writes);
            return writes;
          });
        } finally {
          transacting--;
          if (entered) this.end(wrote);
        }
      };
    }
    const backup = driver.backup.bind(driver);
    driver.backup = async () => {
      this.begin();
      try {
        await backup();
      } finally {
        this.end(true);
      }
    };
  }
}

function isEmpty(writes: WriteSet | undefined): boolean {
  if (!writes) return true;
  return writes.puts.length === 0 && writes.logs.length === 0 && writes.deletes.length === 0 && writes.version === undefined;
}

/**
 * Where the signals of one command go. By default the first SIGINT/SIGTERM stops the command
 * (`stopped` resolves, and the CLI ends it with 130/143). A verb that runs a child process
 * (`run`) takes the signals over while the child lives, to pass them on: those signals are then
 * its own, and neither stop the command nor count as a second signal.
 */
export class SignalRouter {
  /** The signal that stopped the command, once one did. */
  stoppedBy: StopSignal | undefined;
  readonly stopped: Promise<StopSignal>;
  private resolveStopped!: (signal: StopSignal) => void;
  private owner: ((signal: StopSignal) => void) | undefined;

  constructor() {
    this.stopped = new Promise((resolve) => {
      this.resolveStopped = resolve;
    });
  }

  /** Hands a signal to its owner, or stops the command; true when an owner took it. */
  deliver(signal: StopSignal): boolean {
    if (this.owner) {
      this.owner(signal);
      return true;
    }
    this.stoppedBy ??= signal;
    this.resolveStopped(signal);
    return false;
  }

  /**
   * Takes the signals over until the returned function is called. Throws `InterruptedError` when
   * a signal already stopped the command: nothing new (a child process) may start then.
   */
  take(listener: (signal: StopSignal) => void): () => void {
    if (this.stoppedBy) throw new InterruptedError();
    this.owner = listener;
    return () => {
      if (this.owner === listener) this.owner = undefined;
    };
  }
}
