/** One measured line of the benchmark table. */
export interface BenchRow {
  /** The scenario, e.g. "appendOutput, 32 concurrent, 10,000 tasks". */
  scenario: string;
  /** What was measured in it, e.g. "json-file driver", "naive rewrite+fsync", "raw append+fdatasync". */
  subject: string;
  /** Operations per second (median of the runs). */
  opsPerSec: number;
  /** Optional: median latency of one operation in ms. */
  latencyMs?: number;
  note?: string;
}

export interface BenchOptions {
  /** Fewer and smaller runs, for a smoke check of the harness. */
  quick: boolean;
}

/** A suite measures one driver and its comparison subjects, returning rows for the table. */
export type BenchSuite = (options: BenchOptions) => Promise<BenchRow[]>;
