import { metrics } from "@opentelemetry/api";
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics";
import { EventBus, MemoryStorageDriver, TaskManager, TaskRepository } from "@taskstore/core";
import { afterAll, describe, expect, it } from "vitest";

// The application's own OpenTelemetry setup (here: the SDK's in-memory exporter), registered as
// the global meter provider before taskstore is used, as an agent would do at start.
const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
const provider = new MeterProvider({ readers: [reader] });
metrics.setGlobalMeterProvider(provider);
afterAll(() => provider.shutdown());

interface Point {
  attributes: Record<string, unknown>;
  value: unknown;
}

async function collected(): Promise<Map<string, Point[]>> {
  await reader.forceFlush();
  const found = new Map<string, Point[]>();
  for (const resource of exporter.getMetrics()) {
    for (const scope of resource.scopeMetrics) {
      for (const metric of scope.metrics) {
        found.set(metric.descriptor.name, metric.dataPoints as unknown as Point[]);
      }
    }
  }
  exporter.reset();
  return found;
}

describe("OpenTelemetry metrics through @opentelemetry/api", () => {
  it("operations, their latencies, errors, pending changes and the task count reach the application's meter provider", async () => {
    const manager = new TaskManager(new EventBus(), new TaskRepository({ driver: new MemoryStorageDriver() }));
    await manager.loadFromRepository();
    const id = await manager.create({ title: "measured" });
    await manager.appendOutput(id, "one");
    await manager.appendOutput(id, "two");
    // A change the stored state refuses is counted by its code.
    await expect(manager.repository.apply([{ type: "patch", id: "missing-task", set: {}, at: Date.now() }])).rejects.toThrow();
    await manager.repository.loadAll(); // the task count is the store's at the last load
    const points = await collected();
    const ops = points.get("taskstore.operations") ?? [];
    const count = (operation: string) =>
      ops.filter((p) => p.attributes.operation === operation && p.attributes.outcome === "ok").reduce((n, p) => n + Number(p.value), 0);
    expect(count("create")).toBe(1);
    expect(count("update")).toBe(2);
    expect(count("load")).toBeGreaterThanOrEqual(2);
    expect(ops.every((p) => p.attributes.driver === "memory")).toBe(true);
    const durations = points.get("taskstore.operation.duration") ?? [];
    const creates = durations.find((p) => p.attributes.operation === "create")?.value as { count: number; sum: number } | undefined;
    expect(creates?.count).toBe(1);
    expect(creates?.sum).toBeGreaterThanOrEqual(0);
    const errors = points.get("taskstore.errors") ?? [];
    expect(errors.find((p) => p.attributes.code === "NOT_FOUND")?.value).toBe(1);
    expect(points.get("taskstore.tasks")?.[0]?.value).toBe(1);
    expect(points.get("taskstore.pending_changes")?.[0]?.value).toBe(0);
    // Attributes never carry task data.
    expect(JSON.stringify([...points.values()])).not.toContain("measured");
    await manager.close();
  });

  it("rates per second come with the counts in metrics()", async () => {
    const repository = new TaskRepository({ driver: new MemoryStorageDriver() });
    const manager = new TaskManager(new EventBus(), repository);
    await manager.loadFromRepository();
    for (let i = 0; i < 5; i++) await manager.create({ title: `t${i}` });
    const create = repository.metrics().operations.create;
    expect(create.count).toBe(5);
    expect(create.ratePerSec).toBeGreaterThan(0);
    expect(create.recentRatePerSec).toBeGreaterThanOrEqual(create.ratePerSec);
    await manager.close();
  });
});
