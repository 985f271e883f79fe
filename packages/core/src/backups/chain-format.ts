import { randomBytes } from "node:crypto";
import { z } from "zod";
import { CorruptDataError, TaskStoreError, ValidationError } from "../errors.js";
import { joinStore, splitStore } from "../kit/store-envelope.js";
import type { StorageData } from "../schema.js";
import { Sealer } from "../sealing.js";
import type { ChainState, Delta } from "./chain-delta.js";
import { sha256 } from "./chain-files.js";

/*
 * The files of a backup chain, in one folder:
 *
 *   manifest-000000000007.json               the points, oldest first (generation 7), with a checksum
 *   20250301T101530123Z-3f9a.base-xxxx.json  a base point: a whole store of the seed's shape
 *   20250301T111530456Z-b2c1.delta-xxxx.json an incremental point: what changed since its parent
 *
 * A point file is JSON, or, for a sealed store, one value sealed with the store's keys (see
 * sealing.ts: AES-256-GCM, compressed first when the store compresses), so that a backup of an
 * encrypted store holds no plaintext. The manifest holds no task data: ids of points, times,
 * counts, sizes and checksums. Files are never changed once written; a prune writes new ones.
 */

const MANIFEST_FORMAT = "taskstore-backups/1";
const POINT_FORMAT = "taskstore-backup-point/1";
/** The field of a point file that says which point it is (in a base, beside the store's own fields). */
const POINT_FIELD = "taskstoreBackupPoint";

/** One point of a chain, as the manifest lists it. */
export interface BackupPoint {
  /** Sortable by time and typed by people: `20250301T101530123Z-3f9a`. */
  id: string;
  /** A base holds the whole store; a delta what changed since `parent`. */
  kind: "base" | "delta";
  /** The point before this one when it was made (null for the first). */
  parent: string | null;
  /** When the store was read for it (ms). */
  createdAt: number;
  /** The file's name in the chain's folder. */
  file: string;
  /** The file's size. */
  bytes: number;
  sha256: string;
  /** Tasks in the store at this point. */
  tasks: number;
  /** Tasks added or changed since the previous point, when it was made (all of them for a first base). */
  changed: number;
  /** Tasks removed since the previous point, when it was made. */
  removed: number;
  /** The id of the key that sealed the file (never the key); absent for a file in clear. */
  keyId?: string;
  /** Why it was made, when not by `backup()` itself (e.g. "before restoring <id>"). */
  note?: string;
}

/**
 * A point as the manifest holds it. A `pruned` point is one the retention rule removed but the
 * oldest point kept is still built on: never listed or restored, folded away later.
 */
export interface ChainEntry extends BackupPoint {
  pruned?: true;
}

export interface Manifest {
  generation: number;
  points: ChainEntry[];
}

const PointSchema = z.object({
  id: z.string().regex(/^\d{8}T\d{9}Z-[0-9a-f]{4}$/),
  kind: z.enum(["base", "delta"]),
  parent: z.string().nullable(),
  createdAt: z.number().int().nonnegative(),
  file: z.string().regex(/^[0-9A-Za-z.-]+\.json$/),
  bytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  tasks: z.number().int().nonnegative(),
  changed: z.number().int().nonnegative(),
  removed: z.number().int().nonnegative(),
  keyId: z.string().optional(),
  note: z.string().optional(),
  pruned: z.literal(true).optional(),
});
const ManifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  generation: z.number().int().positive(),
  points: z.array(PointSchema),
  checksum: z.string(),
});

export function manifestName(generation: number): string {
  return `manifest-${String(generation).padStart(12, "0")}.json`;
}

/** The generation of a manifest's file name, or undefined for any other file. */
export function generationOf(name: string): number | undefined {
  const match = /^manifest-(\d{12})\.json$/.exec(name);
  return match ? Number(match[1]) : undefined;
}

export function encodeManifest(manifest: Manifest): string {
  const body = { format: MANIFEST_FORMAT, generation: manifest.generation, points: manifest.points };
  return `${JSON.stringify({ ...body, checksum: sha256(JSON.stringify(body)) }, null, 1)}\n`;
}

export function decodeManifest(text: string, where: string): Manifest {
  let parsed: z.infer<typeof ManifestSchema>;
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
    parsed = ManifestSchema.parse(raw);
  } catch (error) {
    throw new CorruptDataError(`the backup chain's manifest ${where} cannot be read: ${(error as Error).message.split("\n")[0]}`, {
      cause: error,
    });
  }
  // The checksum is of the text as written (zod's output orders keys its own way).
  const { checksum, ...body } = raw;
  if (sha256(JSON.stringify(body)) !== checksum) {
    throw new CorruptDataError(`the backup chain's manifest ${where} is damaged (its checksum does not match)`);
  }
  return { generation: parsed.generation, points: parsed.points as ChainEntry[] };
}

/** A new point id for a point made at `now`. */
export function newPointId(now: number): string {
  const iso = new Date(now).toISOString(); // 2025-03-01T10:15:30.123Z
  return `${iso.replace(/[-:.]/g, "").replace("Z", "")}Z-${randomBytes(2).toString("hex")}`;
}

export function pointFileName(id: string, kind: BackupPoint["kind"]): string {
  return `${id}.${kind}-${randomBytes(4).toString("hex")}.json`;
}

/** What a point file says beside its data. */
interface PointHeader {
  format: string;
  id: string;
  kind: BackupPoint["kind"];
  parent: string | null;
  createdAt: number;
}

export type PointContent = { kind: "base"; state: ChainState } | { kind: "delta"; delta: Delta };

/** A point file's text: JSON, sealed as one value when a sealer is given. */
export function encodePoint(
  point: Pick<BackupPoint, "id" | "kind" | "parent" | "createdAt">,
  content: PointContent,
  sealer: Sealer | undefined,
): string {
  const header: PointHeader = { format: POINT_FORMAT, id: point.id, kind: point.kind, parent: point.parent, createdAt: point.createdAt };
  let json: string;
  if (content.kind === "base") {
    // A base is a store of the seed's shape with one more field: `jq` reads it, and copied in
    // place of a JSON file store it loads.
    const store = joinStore(content.state.envelope, [...content.state.tasks.values()]);
    json = JSON.stringify({ ...store, [POINT_FIELD]: header });
  } else {
    json = JSON.stringify({ [POINT_FIELD]: header, ...content.delta });
  }
  return sealer ? sealer.sealText(json) : json;
}

/**
 * A point file's content, checked against its manifest entry: size and checksum first (a damaged
 * or swapped file is `CORRUPT_DATA` naming the point), then opened with `sealer`'s keys (a wrong
 * or missing key is `ENCRYPTION`).
 */
export function decodePoint(bytes: Buffer, point: BackupPoint, sealer: Sealer | undefined): PointContent {
  const damaged = (why: string, cause?: unknown) =>
    new CorruptDataError(`backup point ${point.id}: its file ${point.file} ${why}`, cause === undefined ? undefined : { cause });
  if (bytes.length !== point.bytes || sha256(bytes) !== point.sha256)
    throw damaged("is damaged (its checksum does not match the manifest)");
  let text = bytes.toString("utf8");
  if (text.startsWith("tse1.")) text = (sealer ?? new Sealer({})).openText(text, `backup point ${point.id}`);
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    throw damaged("is not JSON", error);
  }
  const { [POINT_FIELD]: header, ...rest } = value;
  const h = header as PointHeader | undefined;
  if (h?.format !== POINT_FORMAT || h.id !== point.id || h.kind !== point.kind) throw damaged("is not the point the manifest lists");
  if (point.kind === "base") {
    const data = rest as unknown as StorageData;
    if (!Array.isArray(data.tasks) || typeof data.metadata !== "object" || data.metadata === null) throw damaged("holds no store");
    const { envelope, tasks } = splitStore(data);
    return { kind: "base", state: { envelope, tasks: new Map(tasks.map((task) => [task.id, task])) } };
  }
  const delta = rest as unknown as Delta;
  if (!Array.isArray(delta.puts) || !Array.isArray(delta.appends) || !Array.isArray(delta.removed) || !delta.envelope) {
    throw damaged("is not an incremental point");
  }
  return { kind: "delta", delta };
}

/** The points a chain lists (not those only kept because the oldest listed point is built on them). */
export function visible(points: ChainEntry[]): ChainEntry[] {
  return points.filter((point) => !point.pruned);
}

/** The index of the point `id` names: the id itself, or the one id it is a prefix of (4 characters or more). */
export function findPoint(points: ChainEntry[], id: string, dir: string): number {
  const exact = points.findIndex((point) => point.id === id && !point.pruned);
  if (exact >= 0) return exact;
  const hits = id.length >= 4 ? points.flatMap((point, i) => (point.id.startsWith(id) && !point.pruned ? [i] : [])) : [];
  if (hits.length === 1) return hits[0] as number;
  if (hits.length > 1) {
    throw new ValidationError([
      {
        path: ["point"],
        rule: "unique_prefix",
        message: `"${id}" starts ${hits.length} points: ${hits.map((i) => points[i]?.id).join(", ")}`,
      },
    ]);
  }
  const why =
    points.length === 0 ? " (the chain is empty)" : points.some((point) => point.id === id) ? " (the retention rule removed it)" : "";
  throw new TaskStoreError("NOT_FOUND", `there is no backup point ${id} in ${dir}${why}`);
}
