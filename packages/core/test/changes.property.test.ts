import { ChangeApplier, isLogicalError, parseStoredTask, type StoredTask, type TaskChange, TaskTable } from "@taskstore/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const IDS = ["a", "b", "c", "d"];
const id = fc.constantFrom(...IDS);
const at = fc.integer({ min: 1, max: 1_000 });

function task(taskId: string, parentId?: string): StoredTask {
  return {
    id: taskId,
    title: `task ${taskId}`,
    status: "pending",
    ...(parentId ? { parentId } : {}),
    progress: { percent: 0 },
    metadata: {},
    createdAt: 0,
    updatedAt: 0,
    children: [],
    logs: [],
  };
}

const change: fc.Arbitrary<TaskChange> = fc.oneof(
  fc.record({ type: fc.constant("create" as const), task: fc.tuple(id, fc.option(id, { nil: undefined })).map(([t, p]) => task(t, p)) }),
  fc.record({
    type: fc.constant("patch" as const),
    id,
    set: fc.record({ title: fc.string({ minLength: 1, maxLength: 5 }) }, { requiredKeys: [] }),
    at,
  }),
  fc.record({
    type: fc.constant("patch" as const),
    id,
    set: fc.constant({ status: "running" as const }),
    transition: fc.constant({ action: "start", from: ["pending"] as const }),
    at,
  }),
  fc.record({
    type: fc.constant("append" as const),
    id,
    entries: fc.array(fc.record({ timestamp: at, output: fc.string({ maxLength: 4 }), type: fc.constant("log" as const) }), {
      minLength: 1,
      maxLength: 4,
    }),
    at,
  }),
  fc.record({ type: fc.constant("link" as const), parentId: id, childId: id, at }),
  fc.record({ type: fc.constant("remove" as const), id, at }),
);
const link: fc.Arbitrary<TaskChange> = fc.record({ type: fc.constant("link" as const), parentId: id, childId: id, at });
const create: fc.Arbitrary<TaskChange> = fc.record({ type: fc.constant("create" as const), task: id.map((t) => task(t)) });
// Weighted towards creates and links so that deep trees, moves and cycle attempts are common.
const weighted = fc.oneof({ arbitrary: change, weight: 2 }, { arbitrary: create, weight: 2 }, { arbitrary: link, weight: 3 });
const changeSets = fc.array(fc.array(weighted, { minLength: 1, maxLength: 3 }), { maxLength: 25 });

async function applyEach(sets: TaskChange[][], logCap: number, batched: boolean): Promise<{ table: TaskTable; outcomes: boolean[] }> {
  const table = new TaskTable();
  const outcomes: boolean[] = [];
  let applier = new ChangeApplier(table.reader(), { logCap });
  for (const set of sets) {
    try {
      await applier.apply(set);
      outcomes.push(true);
    } catch (error) {
      if (!isLogicalError(error)) throw error;
      outcomes.push(false);
    }
    if (!batched) {
      table.apply(applier.writeSet());
      applier = new ChangeApplier(table.reader(), { logCap });
    }
  }
  if (batched) table.apply(applier.writeSet());
  return { table, outcomes };
}

function checkInvariants(table: TaskTable, logCap: number): void {
  for (const t of table.tasks.values()) {
    parseStoredTask(t); // every stored task passes the schema
    expect(t.logs.length).toBeLessThanOrEqual(logCap);
    if (t.parentId !== undefined) {
      // a child's parent exists and lists it exactly once
      const parent = table.tasks.get(t.parentId);
      expect(parent?.children.filter((c) => c === t.id)).toHaveLength(1);
    }
    for (const childId of t.children) expect(table.tasks.get(childId)?.parentId).toBe(t.id);
    // no cycles: walking up ends
    const seen = new Set<string>();
    for (let up: string | undefined = t.id; up !== undefined; up = table.tasks.get(up)?.parentId) {
      expect(seen.has(up)).toBe(false);
      seen.add(up);
    }
  }
}

describe("change-set application (property-based)", () => {
  it("keeps the tree consistent and acyclic, every task valid and every log within the cap", async () => {
    await fc.assert(
      fc.asyncProperty(changeSets, fc.integer({ min: 1, max: 6 }), async (sets, logCap) => {
        const { table } = await applyEach(sets, logCap, false);
        checkInvariants(table, logCap);
      }),
      { numRuns: 1_500 },
    );
  });

  it("group commit is invisible: a batch of change sets gives the same store and outcomes as one at a time", async () => {
    await fc.assert(
      fc.asyncProperty(changeSets, fc.integer({ min: 1, max: 6 }), async (sets, logCap) => {
        const one = await applyEach(sets, logCap, false);
        const batch = await applyEach(sets, logCap, true);
        expect(batch.outcomes).toEqual(one.outcomes);
        expect(batch.table.toData(0)).toEqual(one.table.toData(0));
      }),
      { numRuns: 300 },
    );
  });

  it("a refused change set leaves no trace: the store equals the one where it was never applied", async () => {
    await fc.assert(
      fc.asyncProperty(changeSets, async (sets) => {
        const { table, outcomes } = await applyEach(sets, 3, false);
        const accepted = sets.filter((_, i) => outcomes[i]);
        const replay = await applyEach(accepted, 3, false);
        expect(replay.outcomes.every(Boolean)).toBe(true);
        expect(replay.table.toData(0)).toEqual(table.toData(0));
      }),
      { numRuns: 300 },
    );
  });

  it("appended entries are kept newest-last and what the cap drops is counted", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 20 }),
        fc.integer({ min: 1, max: 8 }),
        async (sizes, cap) => {
          let n = 0;
          const sets: TaskChange[][] = [[{ type: "create", task: task("a") }]];
          for (const size of sizes) {
            sets.push([
              {
                type: "append",
                id: "a",
                at: 1,
                entries: Array.from({ length: size }, () => ({ timestamp: 1, output: String(n++), type: "log" as const })),
              },
            ]);
          }
          const { table } = await applyEach(sets, cap, false);
          const stored = table.tasks.get("a") as StoredTask;
          const expected = Array.from({ length: n }, (_, i) => String(i)).slice(-cap);
          expect(stored.logs.map((e) => e.output)).toEqual(expected);
          expect(stored.droppedLogCount ?? 0).toBe(n - expected.length);
        },
      ),
    );
  });
});
