import {
  CorruptDataError,
  driverErrors,
  emptyStore,
  joinStore,
  Mutex,
  newerVersion,
  SCHEMA_VERSION,
  type StorageData,
  StorageUnavailableError,
  splitStore,
  TaskStoreError,
  taskBody,
  ValidationError,
} from "@taskstore/core";
import { describe, expect, it } from "vitest";

const task = {
  id: "a",
  title: "t",
  status: "pending",
  progress: { percent: 0 },
  metadata: {},
  createdAt: 1,
  updatedAt: 2,
  children: [],
  logs: [{ timestamp: 3, output: "x", type: "log" }],
} as StorageData["tasks"][number];

describe("the driver kit", () => {
  it("emptyStore() is a fresh store of this SCHEMA_VERSION on every call", () => {
    const one = emptyStore();
    expect(one).toEqual({ version: SCHEMA_VERSION, tasks: [], metadata: { lastUpdated: 0, totalTasks: 0 } });
    one.tasks.push(task);
    expect(emptyStore().tasks).toEqual([]);
  });

  it("splitStore() and joinStore() round-trip a store, unknown fields included", () => {
    const data = { version: "1.2.0", tasks: [task], metadata: { lastUpdated: 9, totalTasks: 1, by: "x" }, future: [1] } as StorageData;
    const { envelope, tasks } = splitStore(data);
    expect(envelope).toEqual({ version: "1.2.0", lastUpdated: 9, extra: { future: [1] }, metadataExtra: { by: "x" } });
    expect(joinStore(envelope, tasks)).toEqual(data);
  });

  it("joinStore() of nothing stored is the empty store, totalTasks counted", () => {
    expect(joinStore({}, [])).toEqual(emptyStore());
    expect(joinStore({ lastUpdated: 5 }, [task]).metadata).toEqual({ lastUpdated: 5, totalTasks: 1 });
  });

  it("taskBody() leaves the log out and the task untouched", () => {
    const body = taskBody(task);
    expect(body).not.toHaveProperty("logs");
    expect(body.id).toBe("a");
    expect(task.logs).toHaveLength(1);
  });

  it("newerVersion() never goes back a version", () => {
    expect(newerVersion("1.0.0", "1.1.0")).toBe("1.1.0");
    expect(newerVersion("1.10.0", "1.9.0")).toBe("1.10.0");
    expect(newerVersion("1.0.0", "1.0.0")).toBe("1.0.0");
  });

  it("Mutex runs work one at a time in call order, and a failure does not stop the next", async () => {
    const mutex = new Mutex();
    const order: string[] = [];
    const slow = mutex.run(async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      order.push("slow");
      throw new Error("boom");
    });
    const fast = mutex.run(() => {
      order.push("fast");
      return 7;
    });
    await expect(slow).rejects.toThrow("boom");
    await expect(fast).resolves.toBe(7);
    await mutex.idle();
    expect(order).toEqual(["slow", "fast"]);
  });

  it("driverErrors() prefixes every message with the driver's name and keeps the cause", async () => {
    const errors = driverErrors("mine");
    const cause = new Error("socket closed");
    const corrupt = errors.corrupt("the row is damaged", cause);
    expect(corrupt).toBeInstanceOf(CorruptDataError);
    expect(corrupt.message).toBe("mine: the row is damaged");
    expect(corrupt.cause).toBe(cause);
    const wrapped = errors.wrap(cause, "load");
    expect(wrapped).toBeInstanceOf(StorageUnavailableError);
    expect(wrapped.message).toBe("mine: load failed: socket closed");
    expect(errors.wrap(corrupt, "load")).toBe(corrupt);
    await expect(errors.guard("save", () => Promise.reject(cause))).rejects.toSatisfy((e) =>
      TaskStoreError.hasCode(e, "STORAGE_UNAVAILABLE"),
    );
    expect(() => errors.parseJson("{", "task a")).toThrow("mine: task a is not valid JSON");
    const invalid = errors.validation([{ path: ["prefix"], rule: "format", message: "is bad" }]);
    expect(invalid).toBeInstanceOf(ValidationError);
    expect(invalid.message).toMatch(/^mine: invalid input: prefix: is bad/);
  });
});
