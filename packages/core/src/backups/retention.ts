import { ValidationError } from "../errors.js";
import type { BackupPoint } from "./chain-format.js";

/**
 * Which points a chain keeps. A point is kept when any rule given keeps it (as restic's
 * `--keep-last` and `--keep-within` do); the newest point is always kept. With neither rule, the
 * last `DEFAULT_KEEP` points.
 */
export interface RetentionRule {
  /** Keep the last `keep` points (at least 1). */
  keep?: number;
  /** Keep the points made within this many milliseconds of now. */
  maxAgeMs?: number;
}

/** The points a chain keeps when no rule is given. */
export const DEFAULT_KEEP = 30;

/** The rule of the options, checked; the default when none is given. */
export function retentionOf(options: RetentionRule): RetentionRule {
  const { keep, maxAgeMs } = options;
  if (keep !== undefined && !(Number.isSafeInteger(keep) && keep >= 1)) {
    throw new ValidationError([{ path: ["keep"], rule: "min 1", message: "must be a whole number of points, at least 1" }]);
  }
  if (maxAgeMs !== undefined && !(Number.isFinite(maxAgeMs) && maxAgeMs > 0)) {
    throw new ValidationError([{ path: ["maxAgeMs"], rule: "positive", message: "must be a positive number of milliseconds" }]);
  }
  if (keep === undefined && maxAgeMs === undefined) return { keep: DEFAULT_KEEP };
  return { ...(keep !== undefined ? { keep } : {}), ...(maxAgeMs !== undefined ? { maxAgeMs } : {}) };
}

/**
 * The index of the oldest point kept. Everything from there on is kept, even a point the rules
 * would drop between two kept ones (a clock set back): only ever a prefix of the chain goes, so
 * no kept point loses the points it is built on.
 */
export function firstKept(points: readonly BackupPoint[], rule: RetentionRule, now: number): number {
  if (points.length === 0) return 0;
  let first = points.length - 1;
  if (rule.keep !== undefined) first = Math.min(first, Math.max(0, points.length - rule.keep));
  if (rule.maxAgeMs !== undefined) {
    const young = points.findIndex((point) => now - point.createdAt <= (rule.maxAgeMs as number));
    if (young >= 0) first = Math.min(first, young);
  }
  return first;
}
