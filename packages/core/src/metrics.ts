import type { TaskStoreError } from "./errors.js";
import type { TelemetrySink } from "./telemetry.js";

export type MeasuredOperation = "create" | "update" | "delete" | "load" | "save";

/** Counts and latencies of one kind of operation. */
export interface OperationStats {
  count: number;
  errors: number;
  totalMs: number;
  maxMs: number;
  /** Median and 95th percentile over the last 1,000 operations. */
  p50Ms: number;
  p95Ms: number;
  /** Operations per second since the repository was made. */
  ratePerSec: number;
  /** Operations per second over the last minute (or since the start, if shorter). */
  recentRatePerSec: number;
}

export interface RecordedError {
  at: number;
  code: string;
  message: string;
  operation: string;
}

/** A point-in-time copy of the repository's metrics. */
export interface MetricsSnapshot {
  operations: Record<MeasuredOperation, OperationStats>;
  /** Errors seen, by code. */
  errors: Record<string, number>;
  /** The last errors, newest last (at most 20). */
  recentErrors: RecordedError[];
  /** Changes accepted in memory and not yet durable (graceful degradation). */
  pendingChanges: number;
  /** Tasks in the store at the last load or write. */
  taskCount: number | undefined;
  /** Bytes the store takes, when the driver can tell. */
  storeSizeBytes: number | undefined;
  lastBackupAt: number | undefined;
}

const WINDOW = 1_000;
const RECENT_MS = 60_000;

class Series {
  count = 0;
  errors = 0;
  totalMs = 0;
  maxMs = 0;
  private readonly window: number[] = [];
  /** When the operations of the last minute ended (performance.now()), oldest first. */
  private readonly recent: number[] = [];

  record(ms: number, failed: boolean): void {
    this.count++;
    if (failed) this.errors++;
    this.totalMs += ms;
    if (ms > this.maxMs) this.maxMs = ms;
    this.window.push(ms);
    if (this.window.length > WINDOW) this.window.shift();
    const now = performance.now();
    this.recent.push(now);
    this.trim(now);
  }

  snapshot(startedAt: number): OperationStats {
    const sorted = [...this.window].sort((a, b) => a - b);
    const at = (q: number) => (sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number));
    const now = performance.now();
    this.trim(now);
    const lifeSec = Math.max((now - startedAt) / 1000, 0.001);
    const recentSec = Math.min(lifeSec, RECENT_MS / 1000);
    return {
      count: this.count,
      errors: this.errors,
      totalMs: this.totalMs,
      maxMs: this.maxMs,
      p50Ms: at(0.5),
      p95Ms: at(0.95),
      ratePerSec: this.count / lifeSec,
      recentRatePerSec: this.recent.length / recentSec,
    };
  }

  private trim(now: number): void {
    let drop = 0;
    while (drop < this.recent.length && (this.recent[drop] as number) < now - RECENT_MS) drop++;
    if (drop > 0) this.recent.splice(0, drop);
  }
}

/** Collects what `metrics()` and `diagnose` report. */
export class Metrics {
  private readonly series: Record<MeasuredOperation, Series> = {
    create: new Series(),
    update: new Series(),
    delete: new Series(),
    load: new Series(),
    save: new Series(),
  };
  private readonly errorCounts: Record<string, number> = {};
  private readonly recent: RecordedError[] = [];
  taskCount: number | undefined;
  storeSizeBytes: number | undefined;
  lastBackupAt: number | undefined;
  /** OpenTelemetry, when the application has it (see telemetry.ts). */
  sink: TelemetrySink | undefined;
  private readonly startedAt = performance.now();

  record(operation: MeasuredOperation, ms: number, failed = false): void {
    this.series[operation].record(ms, failed);
    this.sink?.operation(operation, ms, failed);
  }

  /** Times `work` as one `operation`, counting a throw as an error. */
  async time<T>(operation: MeasuredOperation, work: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      const result = await work();
      this.record(operation, performance.now() - start);
      return result;
    } catch (error) {
      this.record(operation, performance.now() - start, true);
      throw error;
    }
  }

  recordError(error: TaskStoreError, operation: string): void {
    this.errorCounts[error.code] = (this.errorCounts[error.code] ?? 0) + 1;
    this.sink?.error(error.code, operation);
    this.recent.push({ at: Date.now(), code: error.code, message: error.message, operation });
    if (this.recent.length > 20) this.recent.shift();
  }

  snapshot(pendingChanges: number): MetricsSnapshot {
    const operations = Object.fromEntries(
      Object.entries(this.series).map(([name, series]) => [name, series.snapshot(this.startedAt)]),
    ) as Record<MeasuredOperation, OperationStats>;
    return {
      operations,
      errors: { ...this.errorCounts },
      recentErrors: this.recent.map((e) => ({ ...e })),
      pendingChanges,
      taskCount: this.taskCount,
      storeSizeBytes: this.storeSizeBytes,
      lastBackupAt: this.lastBackupAt,
    };
  }
}
