import { isLegacyData, LIMITS, migrateLegacy, parseStorageData } from "@taskstore/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

describe("migrateLegacy", () => {
  it("turns completed todos into completed tasks at 100% and open ones into pending tasks at 0%", () => {
    const data = migrateLegacy(
      [
        { text: "a", completed: true },
        { text: "b", completed: false },
      ],
      { now: 1000 },
    );
    expect(data).toMatchObject({ version: "1.0.0", metadata: { lastUpdated: 1000, totalTasks: 2 } });
    expect(data.tasks.map((t) => [t.title, t.status, t.progress.percent, t.createdAt])).toEqual([
      ["a", "completed", 100, 1000],
      ["b", "pending", 0, 1000],
    ]);
  });

  it("keeps a text longer than the title limit whole in the description", () => {
    const text = "x".repeat(LIMITS.titleLength + 50);
    const [task] = migrateLegacy([{ text, completed: false }]).tasks;
    expect(task?.title.length).toBe(LIMITS.titleLength);
    expect(task?.description).toBe(text);
  });

  it("always produces a store that passes the schema, with unique ids, for any legacy array", () => {
    fc.assert(
      fc.property(fc.array(fc.record({ text: fc.string({ maxLength: 2_000 }), completed: fc.boolean() }), { maxLength: 30 }), (todos) => {
        const data = parseStorageData(migrateLegacy(todos));
        expect(data.tasks).toHaveLength(todos.length);
        expect(new Set(data.tasks.map((t) => t.id)).size).toBe(todos.length);
      }),
    );
  });

  it("isLegacyData() recognises only arrays of { text, completed }", () => {
    expect(isLegacyData([])).toBe(true);
    expect(isLegacyData([{ text: "a", completed: false }])).toBe(true);
    expect(isLegacyData([{ text: "a" }])).toBe(false);
    expect(isLegacyData({ version: "1.0.0", tasks: [] })).toBe(false);
  });
});
