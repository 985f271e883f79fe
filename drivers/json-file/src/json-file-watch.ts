import { type FSWatcher, promises as fs, watch as watchFolder } from "node:fs";
import path from "node:path";
import { sleep } from "@taskstore/core";
import type { DriverState } from "./json-file-state.js";
import { catchUp, sameIdentity, snapshotIdentity } from "./json-file-view.js";

/** fs.watch events are looked at this long after the first of a burst. */
const NUDGE_DELAY_MS = 20;

/**
 * `watch()`: fs.watch on the store's folder, and a cheap poll every `watchIntervalMs` (network
 * folders report no events). A look reads only the journal's new bytes, and the listeners hear of
 * another instance's commits only (this instance's own appends are in its view already).
 */
export class StoreWatch {
  private readonly listeners = new Set<() => void>();
  private watcher: FSWatcher | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private checkAgain = false;
  private nudging = false;
  private nudgeAgain = false;

  constructor(private readonly state: DriverState) {}

  /** Adds `listener`; the first one starts the watching. Returns the unsubscribe function. */
  add(listener: () => void): () => void {
    this.listeners.add(listener);
    if (this.listeners.size === 1) this.startWatching();
    return () => {
      if (this.listeners.delete(listener) && this.listeners.size === 0) this.stopWatching();
    };
  }

  /** Stops watching and forgets every listener (on close). */
  stop(): void {
    this.stopWatching();
    this.listeners.clear();
  }

  /** Tells every listener that another instance committed; a listener that throws is a warning. */
  notify(): void {
    for (const listener of [...this.listeners]) {
      try {
        listener();
      } catch (error) {
        this.state.warn(error as Error);
      }
    }
  }

  private startWatching(): void {
    const { state } = this;
    try {
      this.watcher = watchFolder(state.names.dir, { persistent: false }, (_event, name) => {
        const file = name?.toString();
        if (!file || file === path.basename(state.journalPath) || file === path.basename(state.path)) this.nudge();
      });
      this.watcher.on("error", () => {
        this.watcher?.close();
        this.watcher = undefined; // the poll goes on
      });
    } catch {
      this.watcher = undefined; // no fs.watch here: the poll does it
    }
    this.pollTimer = setInterval(() => this.poke(), state.settings.watchIntervalMs);
    this.pollTimer.unref();
  }

  private stopWatching(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
  }

  /**
   * An event of fs.watch: most come from this instance's own appends, which its view holds
   * already. A stat tells those apart without waiting for the view (a write may be in progress).
   */
  private nudge(): void {
    if (this.nudging) {
      this.nudgeAgain = true;
      return;
    }
    this.nudging = true;
    const { state } = this;
    // Events come in bursts (each append, the lock's folder): looked at once per burst, and at
    // most once per NUDGE_DELAY_MS while they go on (this instance appending without a pause
    // would otherwise have two stats running after every few of its appends).
    void (async () => {
      do {
        await sleep(NUDGE_DELAY_MS);
        if (this.listeners.size === 0) return; // unsubscribed (or closed) meanwhile
        this.nudgeAgain = false;
        const [journal, snapshot] = await Promise.all([
          fs.lstat(state.journalPath).catch(() => undefined),
          snapshotIdentity(state).catch(() => undefined),
        ]);
        const view = state.view;
        const known =
          view &&
          sameIdentity(snapshot, view.snapshot.identity) &&
          (journal
            ? view.journal !== undefined && journal.ino === view.journal.file.ino && journal.size === view.journal.scan.seen
            : view.journal === undefined);
        if (!known) this.poke();
      } while (this.nudgeAgain && this.listeners.size > 0);
    })().finally(() => {
      this.nudging = false;
    });
  }

  /** Looks for another instance's commit (reading only the journal's new bytes) and tells the listeners. */
  private poke(): void {
    if (this.listeners.size === 0) return;
    if (this.checking) {
      this.checkAgain = true;
      return;
    }
    this.checking = (async () => {
      do {
        this.checkAgain = false;
        let foreign = false;
        try {
          foreign = await this.state.turn.run(() => catchUp(this.state));
        } catch {
          foreign = true; // something changed that cannot be read: the listener's load reports it
        }
        if (foreign) this.notify();
      } while (this.checkAgain && this.listeners.size > 0);
    })().finally(() => {
      this.checking = undefined;
    });
  }
}
