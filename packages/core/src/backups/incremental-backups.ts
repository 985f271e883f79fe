import { readFile } from "node:fs/promises";
import path from "node:path";
import { ConflictError, CorruptDataError, ValidationError } from "../errors.js";
import type { TaskRepository } from "../repository.js";
import type { StorageData } from "../schema.js";
import { SealedDriver } from "../sealed-driver.js";
import type { Sealer } from "../sealing.js";
import { applyDelta, type ChainState, dataOf, diffStates, isEmptyDelta, stateOf } from "./chain-delta.js";
import { ensureFolder, listFolder, publishExclusive, removeFiles, sha256, sweep, writeNewFile } from "./chain-files.js";
import {
  type BackupPoint,
  type ChainEntry,
  decodeManifest,
  decodePoint,
  encodeManifest,
  encodePoint,
  findPoint,
  generationOf,
  type Manifest,
  manifestName,
  newPointId,
  type PointContent,
  pointFileName,
  visible,
} from "./chain-format.js";
import { firstKept, type RetentionRule, retentionOf } from "./retention.js";

export interface IncrementalBackupOptions extends RetentionRule {
  /** The chain's folder (a local path); made 0700 when missing. One folder holds one store's chain. */
  dir: string;
  /** The clock, for tests. Default `Date.now`. */
  now?: () => number;
}

export interface BackupResult {
  /** The newest point: the one just written, or the newest one already there when nothing changed. */
  point: BackupPoint;
  /** False when the store had not changed since the newest point, so no point was written. */
  written: boolean;
  /** Ids of the points the retention rule removed (what the points kept need of them was folded into a base). */
  pruned: string[];
}

export interface PointRestoreResult {
  /** The point restored. */
  point: BackupPoint;
  /** Tasks in the store now. */
  tasks: number;
  /** The point that holds the store as it was before the restore (new, or the newest when it had not changed). */
  keptAs: BackupPoint;
}

/** How often a commit that lost the race for the next manifest to another writer is tried again. */
const COMMIT_ATTEMPTS = 8;

/** What the retention rule leaves: the manifest's points, the files to remove, the ids no longer listed. */
interface Retained {
  points: ChainEntry[];
  dropped: ChainEntry[];
  pruned: string[];
}

/** A point file that is not there: after a prune by another process, read the manifest again. */
class MissingPointError extends CorruptDataError {}

/**
 * Incremental backups of a store, through its repository, on any driver: a chain of points in a
 * local folder, a base (the whole store) and then points that hold only what changed since the
 * one before; a retention rule that folds the oldest points into a new base; and a restore to any
 * point kept. Point files are sealed with the store's keys when the repository seals (see
 * chain-format.ts). The core README says how it works and why.
 */
export class IncrementalBackups {
  readonly dir: string;
  private readonly rule: RetentionRule;
  private readonly now: () => number;
  /** The state at the newest point this instance wrote or read, by its file (files never change). */
  private cache: { file: string; state: ChainState } | undefined;

  constructor(
    private readonly repository: TaskRepository,
    options: IncrementalBackupOptions,
  ) {
    if (typeof options?.dir !== "string" || options.dir === "") {
      throw new ValidationError([{ path: ["dir"], rule: "required", message: "the backup chain needs a folder" }]);
    }
    this.dir = path.resolve(options.dir);
    this.rule = retentionOf(options);
    this.now = options.now ?? Date.now;
  }

  /**
   * Reads the store and adds a point with what changed since the newest one (a base when the
   * chain is empty, or with `full`), then applies the retention rule. Writes nothing when the
   * store has not changed (but still prunes what the rule no longer keeps).
   */
  async backup(options: { full?: boolean } = {}): Promise<BackupResult> {
    const result = await this.commit(async () => stateOf(await this.repository.loadStore()), {
      full: options.full === true,
      prune: "lazy",
    });
    return result as BackupResult; // a chain with no point gets a base: there is always one
  }

  /** The points, oldest first. */
  async list(): Promise<BackupPoint[]> {
    return visible((await this.readManifest()).manifest.points);
  }

  /** The store as it was at a point (`id`, or a unique prefix of at least 4 characters). Writes nothing. */
  async read(id: string): Promise<{ point: BackupPoint; data: StorageData }> {
    return this.fresh(async (manifest) => {
      const index = findPoint(manifest.points, id, this.dir);
      return { point: manifest.points[index] as BackupPoint, data: dataOf(await this.stateAt(manifest.points, index, false)) };
    });
  }

  /**
   * Puts the store back as it was at a point. Every file the point needs is read and checked
   * first: a damaged or missing one is `CORRUPT_DATA` naming the point, a wrong or missing key
   * `ENCRYPTION`, and nothing is written. Then, under the store's lock, the store as it is now is
   * kept as a new point (never lost: a restore can be undone by restoring that one), and the
   * point's data replaces it in one `saveData()`.
   */
  async restore(id: string): Promise<PointRestoreResult> {
    const { point, data } = await this.read(id);
    let kept: { point: BackupPoint | undefined } | undefined;
    await this.repository.replaceStore(data, async (current) => {
      kept = await this.commit(async () => stateOf(current), { full: false, prune: "no", note: `before restoring ${point.id}` });
    });
    return { point, tasks: data.tasks.length, keptAs: kept?.point as BackupPoint };
  }

  /**
   * Applies the retention rule now, and folds what the points removed still hold into a new base
   * at once (a backup does that only once it pays, see `retain`): afterwards, no file of the chain
   * holds data of a point it no longer lists. Resolves with the ids removed.
   */
  async prune(): Promise<string[]> {
    return (await this.commit(undefined, { full: false, prune: "now" })).pruned;
  }

  /**
   * One change of the chain: a new point (unless `read` is undefined or nothing changed) and the
   * retention rule, published as the next manifest. Losing the race for that manifest to another
   * writer, it removes its own new files and starts again on the chain as the winner left it.
   */
  private async commit(
    read: (() => Promise<ChainState>) | undefined,
    how: { full: boolean; prune: "no" | "lazy" | "now"; note?: string },
  ): Promise<Omit<BackupResult, "point"> & { point: BackupPoint | undefined }> {
    await ensureFolder(this.dir);
    const sealer = await this.sealer();
    for (let attempt = 0; attempt < COMMIT_ATTEMPTS; attempt++) {
      const { manifest, names } = await this.readManifest();
      const now = this.now();
      const state = read ? await read() : undefined;
      const written: string[] = [];
      let points = manifest.points;
      let added: { point: BackupPoint; state: ChainState } | undefined;
      if (state) {
        const made = await this.nextPoint(manifest.points, state, now, how, sealer);
        if (made) {
          written.push(made.point.file);
          points = [...points, made.point];
          added = { point: made.point, state };
        }
      }
      let kept: Retained = { points, dropped: [], pruned: [] };
      if (how.prune !== "no") kept = await this.retain(points, now, how.prune === "now", sealer, written);
      if (!added && kept.dropped.length === 0 && kept.pruned.length === 0) {
        return { point: visible(points).at(-1), written: false, pruned: [] };
      }
      const generation = manifest.generation + 1;
      if (await publishExclusive(path.join(this.dir, manifestName(generation)), encodeManifest({ generation, points: kept.points }))) {
        if (added) this.cache = { file: added.point.file, state: added.state };
        const listed = new Set(kept.points.map((point) => point.file));
        const old = names.filter((name) => (generationOf(name) ?? generation) < generation - 1);
        await removeFiles(this.dir, [...kept.dropped.map((point) => point.file).filter((file) => !listed.has(file)), ...old]);
        await sweep(this.dir, names, (name) => listed.has(name), now);
        return { point: added?.point ?? visible(kept.points).at(-1), written: added !== undefined, pruned: kept.pruned };
      }
      await removeFiles(this.dir, written);
    }
    throw new ConflictError(`the backup chain in ${this.dir} kept changing under this backup (${COMMIT_ATTEMPTS} attempts)`);
  }

  /**
   * The retention rule applied to `points`. The points it no longer keeps leave the list at once
   * (`pruned`); the files the oldest point kept is built on (its base and the deltas after it)
   * stay, hidden, until folding them pays: a fold writes the oldest point kept as a new base (a
   * whole store), so a backup does it only once those hidden points outnumber the kept ones or
   * outweigh their base, which keeps the chain within about twice the points kept and twice a
   * base, and a backup's writes at what changed (amortized). `now` folds at once.
   */
  private async retain(
    points: ChainEntry[],
    now: number,
    foldNow: boolean,
    sealer: Sealer | undefined,
    written: string[],
  ): Promise<Retained> {
    const shown = visible(points);
    const oldest = shown[firstKept(shown, this.rule, now)];
    const first = oldest ? points.indexOf(oldest) : 0;
    const pruned = shown.filter((point) => points.indexOf(point) < first).map((point) => point.id);
    let base = first;
    while (base > 0 && (points[base] as ChainEntry).kind !== "base") base--;
    const dropped = points.slice(0, base);
    const support = points.slice(base, first);
    const rest = points.slice(first);
    const hiddenDeltas = support.slice(1).reduce((sum, point) => sum + point.bytes, 0);
    const fold = support.length > 0 && (foldNow || support.length > rest.length || hiddenDeltas > (support[0] as ChainEntry).bytes);
    if (!fold) return { points: [...support.map((point) => ({ ...point, pruned: true as const })), ...rest], dropped, pruned };
    const { file: _f, bytes: _b, sha256: _s, keyId: _k, pruned: _p, ...fields } = oldest as ChainEntry;
    const rebased = await this.writePoint(fields, { kind: "base", state: await this.stateAt(points, first, true) }, sealer);
    written.push(rebased.file);
    return { points: [rebased, ...rest.slice(1)], dropped: [...dropped, ...support, oldest as ChainEntry], pruned };
  }

  /** The point after `points` for `state`: a base, or a delta when it is smaller; undefined when nothing changed. */
  private async nextPoint(
    points: BackupPoint[],
    state: ChainState,
    now: number,
    how: { full: boolean; note?: string },
    sealer: Sealer | undefined,
  ): Promise<{ point: BackupPoint } | undefined> {
    const head = points.at(-1);
    let id = newPointId(Math.max(now, head ? head.createdAt : 0));
    while (points.some((point) => point.id === id)) id = newPointId(Math.max(now, head ? head.createdAt : 0));
    const meta = { id, parent: head?.id ?? null, createdAt: now, ...(how.note ? { note: how.note } : {}) };
    if (!head || how.full) {
      const counts = { tasks: state.tasks.size, changed: state.tasks.size, removed: 0 };
      return { point: await this.writePoint({ ...meta, kind: "base", ...counts }, { kind: "base", state }, sealer) };
    }
    const before = await this.stateAt(points, points.length - 1, true);
    const delta = diffStates(before, state);
    if (isEmptyDelta(delta, before)) return undefined;
    const counts = { tasks: state.tasks.size, changed: delta.puts.length + delta.appends.length, removed: delta.removed.length };
    return { point: await this.writePoint({ ...meta, kind: "delta", ...counts }, { kind: "delta", delta }, sealer) };
  }

  /** Writes a point's file (a new name) and returns its manifest entry. */
  private async writePoint(
    point: Omit<BackupPoint, "file" | "bytes" | "sha256" | "keyId">,
    content: PointContent,
    sealer: Sealer | undefined,
  ): Promise<BackupPoint> {
    const kind = content.kind;
    const text = encodePoint({ ...point, kind }, content, sealer);
    const file = pointFileName(point.id, kind);
    await writeNewFile(path.join(this.dir, file), text);
    const bytes = Buffer.from(text, "utf8");
    return { ...point, kind, file, bytes: bytes.length, sha256: sha256(bytes), ...(sealer?.keyId ? { keyId: sealer.keyId } : {}) };
  }

  /**
   * The store at `points[index]`: its base, then every delta after it. With `cached`, from this
   * instance's copy of a point it wrote where it can (to diff against); a read or a restore
   * always reads and checks the files, so damage is found when it matters.
   */
  private async stateAt(points: BackupPoint[], index: number, cached: boolean): Promise<ChainState> {
    let start = index;
    while (start >= 0 && (points[start] as BackupPoint).kind !== "base") start--;
    if (start < 0) throw new CorruptDataError(`the backup chain in ${this.dir} has no base point before ${points[index]?.id}`);
    let state: ChainState | undefined;
    let from = start;
    for (let i = index; cached && i >= start && !state; i--) {
      if (this.cache?.file === (points[i] as BackupPoint).file) {
        state = { envelope: this.cache.state.envelope, tasks: new Map(this.cache.state.tasks) };
        from = i;
      }
    }
    const opener = await this.opener();
    if (!state) {
      const base = await this.readPoint(points[start] as BackupPoint, opener);
      if (base.kind !== "base") throw new CorruptDataError(`backup point ${points[start]?.id} is not a base`);
      state = base.state;
    }
    for (let i = from + 1; i <= index; i++) {
      const point = points[i] as BackupPoint;
      const content = await this.readPoint(point, opener);
      if (content.kind === "base") state = content.state;
      else applyDelta(state, content.delta, point.id);
    }
    return state;
  }

  private async readPoint(point: BackupPoint, sealer: Sealer | undefined): Promise<PointContent> {
    let bytes: Buffer;
    try {
      bytes = await readFile(path.join(this.dir, point.file));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        throw new MissingPointError(`backup point ${point.id}: its file ${point.file} is missing from ${this.dir}`);
      }
      throw error;
    }
    return decodePoint(bytes, point, sealer);
  }

  /** The newest manifest (an empty chain when there is none). */
  private async readManifest(): Promise<{ manifest: Manifest; names: string[] }> {
    for (let attempt = 0; ; attempt++) {
      const names = await listFolder(this.dir);
      const newest = Math.max(0, ...names.map((name) => generationOf(name) ?? 0));
      if (newest === 0) return { manifest: { generation: 0, points: [] }, names };
      const name = manifestName(newest);
      try {
        return { manifest: decodeManifest(await readFile(path.join(this.dir, name), "utf8"), path.join(this.dir, name)), names };
      } catch (error) {
        // Replaced and removed by a writer between the listing and the read: list again.
        if ((error as NodeJS.ErrnoException).code !== "ENOENT" || attempt >= COMMIT_ATTEMPTS) throw error;
      }
    }
  }

  /** Runs `work` on the newest manifest, once more if a point file went missing because a prune replaced it. */
  private async fresh<T>(work: (manifest: Manifest) => Promise<T>): Promise<T> {
    const { manifest } = await this.readManifest();
    try {
      return await work(manifest);
    } catch (error) {
      if (!(error instanceof MissingPointError)) throw error;
      const again = (await this.readManifest()).manifest;
      if (again.generation === manifest.generation) throw error;
      return work(again);
    }
  }

  /** What opens point files: the repository's sealer (its keys, old ones included). */
  private async opener(): Promise<Sealer | undefined> {
    const driver = await this.repository.getDriver();
    return driver instanceof SealedDriver ? driver.sealer : undefined;
  }

  /** What seals new point files: the repository's sealer when it encrypts or compresses. */
  private async sealer(): Promise<Sealer | undefined> {
    const sealer = await this.opener();
    return sealer && (sealer.keyId !== undefined || sealer.compressing) ? sealer : undefined;
  }
}
