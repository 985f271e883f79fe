import { randomBytes, randomUUID } from "node:crypto";
import { emptyStore, type StorageData, TaskStoreError, TaskTable, type WriteSet } from "@taskstore/core";
import { errors } from "./s3-errors.js";
import type { S3Io } from "./s3-io.js";

/*
 * The store is a chain of epochs. An epoch is a base snapshot plus numbered deltas:
 *
 *   <prefix>head.json                      { format, epoch, retired }   where to start reading
 *   <prefix>epochs/<E>/base.json           { format, epoch, data }      a whole StorageData
 *   <prefix>epochs/<E>/d/000000000001.json { tx, at, writes }           one committed WriteSet
 *   <prefix>epochs/<E>/d/000000000002.json { tx, at, seal: F }          epoch E ends, F follows
 *
 * A change set commits by creating the next delta key with `If-None-Match: *`: that one create is
 * the commit point, so a change set touching many tasks is atomic, and two writers racing for
 * the same sequence number cannot both win (the loser gets 412, reads the winner's delta and runs
 * its work again). Appending to a log writes only the new entries.
 *
 * Compaction (when the deltas outgrow the base) writes a new epoch's base from the state at
 * sequence N, then creates delta N+1 as a seal naming it: again one `If-None-Match` create, so a
 * commit racing with it wins or loses cleanly. The head is then moved to the new epoch with
 * `If-Match`; it is only a shortcut, since readers follow seals. Sealed epochs are listed in the
 * head as retired and deleted after a grace period; an instance re-reads the head at least every
 * third of that period, so it never probes for a delta in an epoch that may already be deleted.
 */

const FORMAT = "taskstore-s3/1";
export const HEAD_KEY = "head.json";
export const EPOCHS = "epochs/";

interface Head {
  format: string;
  epoch: string;
  retired: { epoch: string; at: number }[];
}

type Delta = { tx: string; at: number; writes: WriteSet } | { tx: string; at: number; seal: string };

export interface StoreTuning {
  /** Compact after this many deltas in one epoch. */
  maxDeltas: number;
  /** Compact when the deltas' bytes pass max(this, the base's bytes). */
  minCompactBytes: number;
  /** Sealed epochs are deleted this long after they were retired. */
  retiredGraceMs: number;
}

/** One instance's view of the store, cached between calls and caught up before each. */
export interface State {
  epoch: string | undefined;
  seq: number;
  table: TaskTable;
  lastUpdated: number;
  baseBytes: number;
  deltaBytes: number;
  /** The epoch the head named when last read, and the sealed epochs followed since. */
  headEpoch: string | undefined;
  followed: string[];
  confirmedAt: number;
}

const deltaKey = (epoch: string, seq: number) => `${EPOCHS}${epoch}/d/${String(seq).padStart(12, "0")}.json`;
const baseKey = (epoch: string) => `${EPOCHS}${epoch}/base.json`;
const newEpochId = () => `${Date.now().toString(36).padStart(9, "0")}-${randomBytes(4).toString("hex")}`;

export class EpochStore {
  state: State | undefined;

  constructor(
    private readonly io: S3Io,
    private readonly tuning: StoreTuning,
    private readonly warn: (error: Error) => void,
  ) {}

  /** Brings the cached state up to the newest committed delta. */
  async refresh(): Promise<State> {
    let state = this.state;
    if (!state || state.epoch === undefined || Date.now() - state.confirmedAt > this.tuning.retiredGraceMs / 3) {
      const head = await this.readHead();
      const known = state && head && (state.epoch === head.value?.epoch || state.followed.includes(head.value?.epoch ?? ""));
      if (state && known) state.confirmedAt = Date.now();
      else state = await this.loadFromHead(head);
    }
    this.state = state;
    try {
      await this.catchUp(state);
    } catch (error) {
      // A damaged delta or base: start over from the head next time (after a restore it names a new epoch).
      // (hasCode, not CorruptDataError.isInstance: that static is the base's, true for any taskstore error.)
      if (TaskStoreError.hasCode(error, "CORRUPT_DATA")) this.state = undefined;
      throw error;
    }
    return state;
  }

  /** Commits one write set after `state.seq`; false when another writer took that sequence number. */
  async commit(state: State, writes: WriteSet): Promise<boolean> {
    if (state.epoch === undefined) {
      await this.createStore(emptyStore());
      return false; // re-read: the store (ours or a racer's) exists now
    }
    const tx = randomUUID();
    const text = JSON.stringify({ tx, at: Date.now(), writes });
    const key = deltaKey(state.epoch, state.seq + 1);
    if ((await this.io.putIfAbsent(key, text)) === undefined && !(await this.isOurs(key, tx))) return false;
    this.apply(state, JSON.parse(text) as Delta, text.length);
    if (this.shouldCompact(state)) await this.compact(state).catch((error: Error) => this.warn(error));
    return true;
  }

  /**
   * Replaces the whole store with `data` as a new epoch (saveData, restore). Seals the current
   * epoch at its tip so no writer can commit to it afterwards. A store whose epoch cannot be read
   * (corrupt) gets its head replaced, then every other epoch under `epochs/` sealed at its next
   * free number (see sealAllBut). Returns the new epoch.
   */
  async replace(data: StorageData, tolerateCorrupt: boolean): Promise<string> {
    for (let attempt = 0; attempt < 50; attempt++) {
      let state: State | undefined;
      try {
        state = await this.refresh();
      } catch (error) {
        if (!(tolerateCorrupt && TaskStoreError.hasCode(error, "CORRUPT_DATA"))) throw error;
        this.state = undefined;
      }
      if (state?.epoch === undefined && state) {
        const created = await this.createStore(data);
        if (created) return created;
        continue;
      }
      const epoch = newEpochId();
      const text = JSON.stringify({ format: FORMAT, epoch, data });
      await this.io.putIfAbsent(baseKey(epoch), text);
      if (state) {
        if (!(await this.seal(state, epoch))) {
          await this.io.delete(baseKey(epoch)).catch(() => undefined);
          continue;
        }
        this.startEpoch(state, epoch, data, text.length);
        await this.advanceHead(state).catch((error: Error) => this.warn(error));
        return epoch;
      }
      // Unreadable store: point the head at the new epoch whatever it held.
      const head = await this.io.get(HEAD_KEY);
      const body = JSON.stringify({ format: FORMAT, epoch, retired: [] } satisfies Head);
      const written = head ? await this.io.putIfMatch(HEAD_KEY, body, head.etag) : await this.io.putIfAbsent(HEAD_KEY, body);
      if (written !== undefined) {
        this.state = undefined;
        // An instance that cached an old epoch would keep committing to it (nothing occupies its
        // next delta) until it re-reads the head: seal every old epoch so its next create gets 412.
        await this.sealAllBut(epoch);
        return epoch;
      }
      await this.io.delete(baseKey(epoch)).catch(() => undefined);
    }
    throw errors.corrupt("could not replace the store: its head kept changing");
  }

  /** Every key of the live store (head and epochs), for moving it aside. */
  async liveKeys(): Promise<string[]> {
    const keys = (await this.io.list(EPOCHS)).map((item) => item.key);
    if (await this.io.get(HEAD_KEY)) keys.unshift(HEAD_KEY);
    return keys;
  }

  toData(state: State): StorageData {
    return JSON.parse(JSON.stringify(state.table.toData(state.lastUpdated))) as StorageData;
  }

  // ---------------------------------------------------------------------------------------------

  private async readHead(): Promise<{ value: Head | undefined; etag: string } | undefined> {
    const found = await this.io.get(HEAD_KEY);
    if (!found) return undefined;
    return {
      value: parseObject<Head>(found.body, HEAD_KEY, (v) => typeof v.epoch === "string" && Array.isArray(v.retired)),
      etag: found.etag,
    };
  }

  private async loadFromHead(head: { value: Head | undefined } | undefined): Promise<State> {
    const now = Date.now();
    if (!head?.value) {
      return {
        epoch: undefined,
        seq: 0,
        table: TaskTable.fromData(emptyStore()),
        lastUpdated: 0,
        baseBytes: 0,
        deltaBytes: 0,
        headEpoch: undefined,
        followed: [],
        confirmedAt: now,
      };
    }
    const state = await this.loadEpoch(head.value.epoch);
    state.headEpoch = head.value.epoch;
    return state;
  }

  private async loadEpoch(epoch: string): Promise<State> {
    // The base and the listing of the deltas after it, in parallel: two round trips become one.
    const [base, deltas] = await Promise.all([this.io.get(baseKey(epoch)), this.io.list(`${EPOCHS}${epoch}/d/`)]);
    if (!base) throw errors.corrupt(`the base of epoch ${epoch} (${this.io.prefix}${baseKey(epoch)}) is missing`);
    const parsed = parseObject<{ data: StorageData }>(base.body, baseKey(epoch), (v) => isData(v.data));
    const state: State = {
      epoch,
      seq: 0,
      table: TaskTable.fromData(parsed.data),
      lastUpdated: parsed.data.metadata?.lastUpdated ?? 0,
      baseBytes: base.body.length,
      deltaBytes: 0,
      headEpoch: epoch,
      followed: [],
      confirmedAt: Date.now(),
    };
    // Read the deltas already there in parallel (listed page by page); catchUp() then probes past them.
    const listed = deltas.map((item) => item.key).sort();
    for (let from = 0; from < listed.length; from += 32) {
      const bodies = await Promise.all(listed.slice(from, from + 32).map((key) => this.io.get(key)));
      for (let i = 0; i < bodies.length; i++) {
        const key = listed[from + i] as string;
        const found = bodies[i];
        if (!found || key !== deltaKey(epoch, state.seq + 1)) return state;
        const delta = parseDelta(found.body, key);
        if ("seal" in delta) return state; // catchUp() follows it
        this.apply(state, delta, found.body.length);
      }
    }
    return state;
  }

  private async catchUp(state: State): Promise<void> {
    const start = state.headEpoch;
    let followedSeal = false;
    for (;;) {
      if (state.epoch === undefined) return;
      const key = deltaKey(state.epoch, state.seq + 1);
      const found = await this.io.get(key);
      if (!found) break;
      const delta = parseDelta(found.body, key);
      if ("seal" in delta) {
        const next = await this.loadEpoch(delta.seal);
        Object.assign(state, { ...next, headEpoch: start, followed: [...state.followed, state.epoch], confirmedAt: state.confirmedAt });
        followedSeal = true;
        continue;
      }
      this.apply(state, delta, found.body.length);
    }
    if (followedSeal) await this.advanceHead(state).catch((error: Error) => this.warn(error));
  }

  private apply(state: State, delta: Delta, bytes: number): void {
    if (!("writes" in delta)) return;
    state.table.apply(delta.writes);
    state.seq++;
    state.lastUpdated = delta.at;
    state.deltaBytes += bytes;
  }

  private shouldCompact(state: State): boolean {
    return state.seq >= this.tuning.maxDeltas || state.deltaBytes > Math.max(this.tuning.minCompactBytes, state.baseBytes);
  }

  private async compact(state: State): Promise<void> {
    const epoch = newEpochId();
    const data = state.table.toData(state.lastUpdated);
    const text = JSON.stringify({ format: FORMAT, epoch, data });
    await this.io.putIfAbsent(baseKey(epoch), text);
    if (!(await this.seal(state, epoch))) {
      // A commit got there first; the next one will compact.
      await this.io.delete(baseKey(epoch)).catch(() => undefined);
      return;
    }
    this.startEpoch(state, epoch, undefined, text.length);
    await this.advanceHead(state);
  }

  private async seal(state: State, next: string): Promise<boolean> {
    const tx = randomUUID();
    const key = deltaKey(state.epoch as string, state.seq + 1);
    const written = await this.io.putIfAbsent(key, JSON.stringify({ tx, at: Date.now(), seal: next }));
    return written !== undefined || (await this.isOurs(key, tx));
  }

  /**
   * Seals every epoch except `next` that does not already end in a seal, so an instance still
   * committing to one (it cached it before the head moved) gets 412, re-reads, follows the seal
   * and writes to `next`. The seal goes at the epoch's next free number found by listing; if a
   * racing writer takes that number first, its delta landed before the seal (it belongs to the
   * replaced store) and the seal goes at the number after.
   */
  private async sealAllBut(next: string): Promise<void> {
    const last = new Map<string, number>();
    for (const item of await this.io.list(EPOCHS)) {
      const match = /^epochs\/([^/]+)\/(?:d\/(\d{12})\.json|base\.json)$/.exec(item.key);
      if (!match?.[1] || match[1] === next) continue;
      last.set(match[1], Math.max(last.get(match[1]) ?? 0, match[2] ? Number(match[2]) : 0));
    }
    for (const [epoch, seq] of last) {
      if (seq > 0 && (await this.endsInSeal(epoch, seq))) continue;
      for (let at = seq + 1; ; at++) {
        if (at > seq + 1000) throw errors.conflict(`could not seal epoch ${epoch}: writers kept committing to it`);
        const tx = randomUUID();
        const key = deltaKey(epoch, at);
        if ((await this.io.putIfAbsent(key, JSON.stringify({ tx, at: Date.now(), seal: next }))) !== undefined) break;
        if (await this.isOurs(key, tx)) break;
      }
    }
  }

  private async endsInSeal(epoch: string, seq: number): Promise<boolean> {
    const found = await this.io.get(deltaKey(epoch, seq));
    if (!found) return false;
    try {
      return "seal" in parseDelta(found.body, deltaKey(epoch, seq));
    } catch {
      return false;
    }
  }

  private startEpoch(state: State, epoch: string, data: StorageData | undefined, bytes: number): void {
    if (data) {
      state.table = TaskTable.fromData(JSON.parse(JSON.stringify(data)) as StorageData);
      state.lastUpdated = data.metadata?.lastUpdated ?? Date.now();
    }
    state.followed = [...state.followed, state.epoch as string];
    state.epoch = epoch;
    state.seq = 0;
    state.baseBytes = bytes;
    state.deltaBytes = 0;
  }

  /** Creates a new store whose first epoch holds `data` and returns that epoch; undefined when another writer created it first. */
  private async createStore(data: StorageData): Promise<string | undefined> {
    const epoch = newEpochId();
    await this.io.putIfAbsent(baseKey(epoch), JSON.stringify({ format: FORMAT, epoch, data }));
    const created = await this.io.putIfAbsent(HEAD_KEY, JSON.stringify({ format: FORMAT, epoch, retired: [] } satisfies Head));
    if (created === undefined) {
      const head = await this.readHead();
      if (head?.value?.epoch === epoch) return epoch; // our create, retried after a lost response
      await this.io.delete(baseKey(epoch)).catch(() => undefined);
      this.state = undefined;
      return undefined;
    }
    this.state = undefined;
    return epoch;
  }

  /**
   * Moves the head from the epoch it named (when this instance last read it) to the current one,
   * retiring the epochs in between, and deletes retired epochs past their grace period. Only a
   * head still naming `state.headEpoch` is replaced: one that moved was moved by someone who
   * knows at least as much.
   */
  private async advanceHead(state: State): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      if (state.headEpoch === state.epoch) return;
      const head = await this.readHead();
      if (!head?.value || head.value.epoch !== state.headEpoch) return;
      const now = Date.now();
      const retired = [...head.value.retired];
      for (const epoch of [head.value.epoch, ...state.followed]) {
        if (epoch !== state.epoch && !retired.some((entry) => entry.epoch === epoch)) retired.push({ epoch, at: now });
      }
      const expired = retired.filter((entry) => now - entry.at > this.tuning.retiredGraceMs);
      for (const entry of expired) await this.deleteEpoch(entry.epoch);
      const keep = retired.filter((entry) => !expired.includes(entry));
      const body = JSON.stringify({ format: FORMAT, epoch: state.epoch as string, retired: keep } satisfies Head);
      if ((await this.io.putIfMatch(HEAD_KEY, body, head.etag)) !== undefined) {
        state.headEpoch = state.epoch;
        state.followed = [];
        state.confirmedAt = now;
        return;
      }
    }
  }

  private async deleteEpoch(epoch: string): Promise<void> {
    const keys = (await this.io.list(`${EPOCHS}${epoch}/`)).map((item) => item.key);
    for (let i = 0; i < keys.length; i += 16) await Promise.all(keys.slice(i, i + 16).map((key) => this.io.delete(key)));
  }

  private async isOurs(key: string, tx: string): Promise<boolean> {
    const found = await this.io.get(key);
    if (!found) return false;
    try {
      return (JSON.parse(found.body) as { tx?: string }).tx === tx;
    } catch {
      return false;
    }
  }
}

function parseObject<T>(text: string, key: string, check: (value: Record<string, unknown>) => boolean): T {
  const value = errors.parseJson(text, key);
  if (typeof value !== "object" || value === null || Array.isArray(value) || !check(value as Record<string, unknown>)) {
    throw errors.corrupt(`${key} is not a taskstore S3 object`);
  }
  if ((value as { format?: unknown }).format !== undefined && (value as { format?: unknown }).format !== FORMAT) {
    throw errors.corrupt(`${key} has format ${String((value as { format?: unknown }).format)}, not ${FORMAT}`);
  }
  return value as T;
}

function parseDelta(text: string, key: string): Delta {
  return parseObject<Delta>(
    text,
    key,
    (v) => typeof v.tx === "string" && (typeof v.seal === "string" || (typeof v.writes === "object" && v.writes !== null)),
  );
}

function isData(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  const data = value as { version?: unknown; tasks?: unknown };
  return typeof data.version === "string" && Array.isArray(data.tasks);
}
