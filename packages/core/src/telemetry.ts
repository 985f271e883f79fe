import type { MeasuredOperation } from "./metrics.js";

/*
 * OpenTelemetry metrics, when the application has `@opentelemetry/api` (an optional peer
 * dependency): taskstore records into the global meter provider the application registered, so
 * an agent sends taskstore's metrics to its own collector. Without the package, or without a
 * registered provider (the API's no-op meter), nothing is exported and nothing is loaded.
 */

/** What `Metrics` reports to OpenTelemetry. */
export interface TelemetrySink {
  operation(operation: MeasuredOperation, ms: number, failed: boolean): void;
  error(code: string, operation: string): void;
}

interface OtelCounter {
  add(value: number, attributes?: Record<string, string>): void;
}
interface OtelHistogram {
  record(value: number, attributes?: Record<string, string>): void;
}
interface OtelObservableResult {
  observe(value: number, attributes?: Record<string, string>): void;
}
interface OtelMeter {
  createCounter(name: string, options?: { description?: string; unit?: string }): OtelCounter;
  createHistogram(name: string, options?: { description?: string; unit?: string }): OtelHistogram;
  createObservableGauge(
    name: string,
    options?: { description?: string; unit?: string },
  ): { addCallback(callback: (result: OtelObservableResult) => void): void };
}
interface OtelApi {
  metrics: { getMeter(name: string, version?: string): OtelMeter };
}

let api: Promise<OtelApi | undefined> | undefined;

/** The OpenTelemetry API if the application has it installed, looked up once. */
function loadApi(): Promise<OtelApi | undefined> {
  // A variable specifier: bundlers and TypeScript leave an optional dependency alone.
  const specifier = "@opentelemetry/api";
  api ??= import(specifier).then(
    (module: OtelApi & { default?: OtelApi }) => (module.metrics ? module : module.default),
    () => undefined,
  );
  return api;
}

/** Observed values for the gauges, read when the application's reader collects. */
export interface TelemetryGauges {
  pendingChanges(): number;
  taskCount(): number | undefined;
}

/**
 * A sink on the application's meter provider, or undefined without `@opentelemetry/api`.
 * Instruments: `taskstore.operations` (counter; `operation`, `outcome`), `taskstore.operation.duration`
 * (histogram, ms; `operation`), `taskstore.errors` (counter; `code`, `operation`),
 * `taskstore.pending_changes` and `taskstore.tasks` (gauges). Attributes never hold task data.
 */
export async function openTelemetry(driver: string, gauges: TelemetryGauges): Promise<TelemetrySink | undefined> {
  const otel = await loadApi();
  if (!otel) return undefined;
  const meter = otel.metrics.getMeter("@taskstore/core");
  const operations = meter.createCounter("taskstore.operations", { description: "Store operations, by kind and outcome" });
  const duration = meter.createHistogram("taskstore.operation.duration", { description: "Store operation latency", unit: "ms" });
  const errors = meter.createCounter("taskstore.errors", { description: "Errors, by stable code" });
  meter
    .createObservableGauge("taskstore.pending_changes", { description: "Changes accepted in memory, not yet durable" })
    .addCallback((result) => result.observe(gauges.pendingChanges(), { driver }));
  meter.createObservableGauge("taskstore.tasks", { description: "Tasks in the store at the last load or write" }).addCallback((result) => {
    const count = gauges.taskCount();
    if (count !== undefined) result.observe(count, { driver });
  });
  return {
    operation(operation, ms, failed) {
      operations.add(1, { driver, operation, outcome: failed ? "error" : "ok" });
      duration.record(ms, { driver, operation });
    },
    error(code, operation) {
      errors.add(1, { driver, code, operation });
    },
  };
}
