import { type StorageData, TaskTable } from "@taskstore/core";
import { describe, expect, it } from "vitest";
import { StoreBytes } from "../src/json-file-store-bytes.js";

function table(): TaskTable {
  const data = {
    zeta: { unknown: "top-level field of a newer minor version", tasks: [] },
    version: "1.3.0",
    tasks: ["a", "b", "c"].map((id, i) => ({
      id,
      title: `tâche ${id} ✓ "quoted" \u2028`,
      status: "running",
      progress: { percent: i },
      metadata: { __proto__: { nested: true }, emoji: "🦀" },
      createdAt: 1,
      updatedAt: 2,
      children: [],
      logs: [{ timestamp: 3, output: "line\nwith newline", type: "stdout" }],
      extraTaskField: [1, { deep: null }],
    })),
    metadata: { lastUpdated: 0, totalTasks: 3, extraMeta: "kept" },
  } as unknown as StorageData;
  return TaskTable.fromData(JSON.parse(JSON.stringify(data)));
}

describe("StoreBytes", () => {
  it("encodes a table byte for byte as JSON.stringify(table.toData()) would, unknown fields included", () => {
    const t = table();
    expect(new StoreBytes().encode(t, 42).toString("utf8")).toBe(JSON.stringify(t.toData(42)));
  });

  it("after write sets (appends, puts, deletes) the cached encoding still matches a full stringify", () => {
    const t = table();
    const bytes = new StoreBytes();
    bytes.encode(t, 1);
    const writes = [
      {
        puts: [],
        logs: [{ id: "b", entries: [{ timestamp: 9, output: "appended", type: "log" as const }], replace: false, keep: 10 }],
        deletes: [],
      },
      { puts: [{ ...t.head("a"), title: "renamed", logCount: undefined }], logs: [], deletes: ["c"] },
      {
        puts: [
          {
            id: "d",
            title: "new",
            status: "pending" as const,
            progress: { percent: 0 },
            metadata: {},
            createdAt: 5,
            updatedAt: 5,
            children: [],
          },
        ],
        logs: [{ id: "a", entries: [], replace: true, keep: 10 }],
        deletes: [],
        version: "1.4.0",
      },
    ];
    for (const [i, write] of writes.entries()) {
      bytes.forget(write as never);
      t.apply(write as never);
      expect(bytes.encode(t, 100 + i).toString("utf8"), `write ${i}`).toBe(JSON.stringify(t.toData(100 + i)));
    }
  });
});
