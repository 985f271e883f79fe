import {
  LIMITS,
  MetadataSchema,
  newTaskId,
  parseStorageData,
  parseStoredTask,
  StorageDataSchema,
  StoredTaskSchema,
  TaskIdSchema,
  ValidationError,
} from "@taskstore/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const validTask = fc.record({
  id: fc.stringMatching(/^[A-Za-z0-9_-]{1,40}$/),
  title: fc.string({ minLength: 1, maxLength: 50 }),
  status: fc.constantFrom("pending", "running", "paused", "completed", "failed", "cancelled"),
  progress: fc.record({ percent: fc.double({ min: 0, max: 100, noNaN: true }) }),
  metadata: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 4 })),
  createdAt: fc.nat(),
  updatedAt: fc.nat(),
  children: fc.array(fc.stringMatching(/^[A-Za-z0-9_-]{1,10}$/), { maxLength: 3 }),
  logs: fc.array(
    fc.record({ timestamp: fc.nat(), output: fc.string(), type: fc.constantFrom("stdout", "stderr", "log", "error", "info", "debug") }),
    { maxLength: 5 },
  ),
});

const oddValue = fc.oneof(
  fc.anything(),
  fc.constantFrom<unknown>(
    -1,
    1.5,
    101,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    2 ** 53,
    "",
    "x".repeat(LIMITS.titleLength + 1),
    null,
    undefined,
    {},
    [],
    "bad id",
  ),
);
const place = fc.constantFrom(
  ["id"],
  ["title"],
  ["description"],
  ["status"],
  ["parentId"],
  ["assignedTo"],
  ["progress"],
  ["progress", "percent"],
  ["progress", "currentStep"],
  ["progress", "message"],
  ["progress", "extra"],
  ["metadata"],
  ["metadata", "k"],
  ["createdAt"],
  ["children"],
  ["logs"],
  ["droppedLogCount"],
  ["unknownField"],
);

describe("the load path's check in place", () => {
  it("returns a store as it is only when the schema accepts it and would output the same", () => {
    fc.assert(
      fc.property(fc.array(validTask, { maxLength: 4 }), fc.nat(3), place, oddValue, (tasks, which, where, value) => {
        const copy = JSON.parse(JSON.stringify(tasks)) as Record<string, unknown>[];
        const target = copy[which % Math.max(copy.length, 1)];
        if (target) {
          let at: Record<string, unknown> = target;
          for (const key of where.slice(0, -1)) at = (at[key] ?? {}) as Record<string, unknown>;
          at[where.at(-1) as string] = value;
        }
        const store = { version: "1.0.0", tasks: copy, metadata: { lastUpdated: 1, totalTasks: copy.length } };
        let result: unknown;
        try {
          result = parseStorageData(store);
        } catch {
          return; // refused: zod decided
        }
        if (result !== store) return; // zod's copy
        expect(StorageDataSchema.safeParse(store).success).toBe(true);
        for (const task of copy) expect(parseStoredTask(task)).toEqual(task);
      }),
      { numRuns: 2_000 },
    );
  });
});

describe("the load path's check of metadata size", () => {
  // The in-place check bounds the JSON text's length instead of making it: the bound must never
  // let a store through whose metadata is over the limit once serialized (escapes included).
  const storeWith = (metadata: Record<string, unknown>) => ({
    version: "1.0.0",
    tasks: [{ ...StoredTaskSchema.parse(sampleTask()), metadata }],
    metadata: { lastUpdated: 1, totalTasks: 1 },
  });
  /** The length of `text` once escaped in a JSON string, quotes not counted. */
  const escaped = (text: string) => JSON.stringify(text).length - 2;
  const overBy = (text: string, extra: number) => ({ k: text.repeat(Math.ceil((LIMITS.metadataSize + extra) / escaped(text))) });

  it.each([
    ["plain text", "a"],
    ["text that JSON escapes to six characters", "\u0001"],
    ["quotes and backslashes", '"\\'],
  ])("metadata just over the size limit as JSON is refused on load (%s)", (_name, unit) => {
    const metadata = overBy(unit, 1);
    expect(JSON.stringify(metadata).length).toBeGreaterThan(LIMITS.metadataSize);
    expect(() => parseStorageData(storeWith(metadata))).toThrow(ValidationError);
  });

  it("metadata just under the size limit, escapes included, loads as it is", () => {
    const unit = "\u0001x";
    const metadata = { k: unit.repeat(Math.floor((LIMITS.metadataSize - 10) / escaped(unit))) };
    expect(JSON.stringify(metadata).length).toBeLessThanOrEqual(LIMITS.metadataSize);
    const store = storeWith(metadata);
    expect(parseStorageData(store)).toBe(store);
  });
});

describe("schema (property-based)", () => {
  it("every valid task survives a JSON round-trip through the schema unchanged", () => {
    fc.assert(
      fc.property(validTask, (task) => {
        const parsed = parseStoredTask(JSON.parse(JSON.stringify(task)));
        expect(parsed).toEqual(JSON.parse(JSON.stringify(task)));
      }),
    );
  });

  it("any string outside [A-Za-z0-9_-]{1,128} is refused as an id", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 140 }), (candidate) => {
        const valid = /^[A-Za-z0-9_-]{1,128}$/.test(candidate);
        expect(TaskIdSchema.safeParse(candidate).success).toBe(valid);
      }),
    );
  });

  it("metadata with any non-JSON value anywhere is refused, naming its path", () => {
    const bad = fc.constantFrom<unknown>(() => 1, Symbol("s"), 1n, Number.NaN, Number.NEGATIVE_INFINITY, undefined, new Map(), new Date());
    fc.assert(
      fc.property(fc.array(fc.string({ minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 5 }), bad, (path, value) => {
        let metadata: unknown = value;
        for (const key of [...path].reverse()) metadata = { [key]: metadata };
        const result = MetadataSchema.safeParse(metadata);
        expect(result.success).toBe(false);
        try {
          parseStoredTask({ ...StoredTaskSchema.parse(sampleTask()), metadata });
        } catch (error) {
          expect(error).toBeInstanceOf(ValidationError);
          expect((error as ValidationError).issues[0]?.path).toEqual(["metadata", ...path]);
          return;
        }
        throw new Error("accepted");
      }),
    );
  });

  it("generated ids are valid, unique and sort in creation order", () => {
    const ids = Array.from({ length: 5_000 }, () => newTaskId());
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    for (const id of ids.slice(0, 50)) expect(TaskIdSchema.safeParse(id).success).toBe(true);
    expect(newTaskId(1_000) < newTaskId(2_000)).toBe(true);
  });

  it("a ValidationError names the field path and the rule", () => {
    try {
      parseStoredTask({ ...sampleTask(), title: "x".repeat(LIMITS.titleLength + 1) });
      throw new Error("accepted");
    } catch (error) {
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).code).toBe("VALIDATION");
      expect((error as ValidationError).issues[0]).toMatchObject({ path: ["title"], rule: `max ${LIMITS.titleLength}` });
      expect((error as ValidationError).message).toContain("title");
    }
  });
});

function sampleTask() {
  return {
    id: "sample",
    title: "s",
    status: "pending",
    progress: { percent: 0 },
    metadata: {},
    createdAt: 0,
    updatedAt: 0,
    children: [],
    logs: [],
  };
}
