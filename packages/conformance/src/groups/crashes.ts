import { expect, it } from "vitest";
import { type Child, startChild } from "../child-driver.js";
import { makeTask, sleep } from "../fixtures.js";
import type { Harness } from "../harness.js";
import { afterTakeover, need, needProcesses } from "../waiting.js";

/** What a killed writer had sent and had acknowledged, by call number. */
function ledger(child: Child): { sent: Set<number>; acked: Set<number> } {
  const sent = new Set<number>();
  const acked = new Set<number>();
  for (const line of child.lines) {
    if (typeof line.sent === "number") sent.add(line.sent);
    if (typeof line.ack === "number") acked.add(line.ack);
  }
  return { sent, acked };
}

export function crashTests(h: Harness): void {
  it("a writer SIGKILLed at random moments loses no acknowledged write, applies none twice, and its lock is taken over", async (ctx) => {
    needProcesses(h, ctx);
    const { kills } = h.processOptions;
    const taskId = "the-crash-target";
    await (await h.repository()).save(makeTask({ id: taskId, title: "the crash target" }));
    const problems: string[] = [];
    for (let k = 0; k < kills && problems.length === 0; k++) {
      const tag = `k${k}`;
      const child = startChild({ driver: h.child(), mode: "crash-writer", tag, taskId, concurrency: 1 + (k % 4) });
      await child.waitFor((line) => line.ready === true, "opening the store");
      const target = 1 + Math.floor(Math.random() * 12);
      let acks = 0;
      await child.waitFor((line) => typeof line.ack === "number" && ++acks >= target, `${target} acknowledged writes`);
      await sleep(Math.random() * 15); // land anywhere: between writes, inside one, inside a lock
      child.process.kill("SIGKILL");
      await child.exited;
      const { sent, acked } = ledger(child);
      for (const line of child.lines)
        if (line.persistenceError) problems.push(`kill ${k}: the writer's storage failed: ${line.persistenceError}`);

      // A fresh instance loads the store (taking over whatever lock the dead writer held) and writes.
      const after = await h.repository();
      await afterTakeover(h, () =>
        after.apply([
          { type: "append", id: taskId, entries: [{ timestamp: Date.now(), type: "log", output: `${tag}-after` }], at: Date.now() },
        ]),
      );
      const tasks = (await (await h.repository()).loadAll()).filter((task) => task.title.startsWith(`${tag}-`));
      const lines = (await (await h.repository()).loadById(taskId))?.logs.map((entry) => entry.output) ?? [];
      const count = new Map<string, number>();
      for (const line of lines) count.set(line, (count.get(line) ?? 0) + 1);
      for (const task of tasks) count.set(`title:${task.title}`, (count.get(`title:${task.title}`) ?? 0) + 1);
      for (const i of new Set([...sent, ...acked])) {
        const key = i % 4 === 3 ? `title:${tag}-${i}` : `${tag}-${i}`;
        const n = count.get(key) ?? 0;
        if (acked.has(i) && n !== 1) problems.push(`kill ${k}: acknowledged write ${key} is stored ${n} times`);
        if (!acked.has(i) && n > 1) problems.push(`kill ${k}: write ${key} (in flight at the kill) is stored ${n} times`);
        count.delete(key);
      }
      if ((count.get(`${tag}-after`) ?? 0) !== 1)
        problems.push(`kill ${k}: the write after the kill is stored ${count.get(`${tag}-after`) ?? 0} times`);
      count.delete(`${tag}-after`);
      for (const [key, n] of count) {
        if (key.startsWith(`${tag}-`) || key.startsWith(`title:${tag}-`))
          problems.push(`kill ${k}: ${key} (never sent) is stored ${n} times`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("a lock whose holder was SIGKILLed is taken over: the next write lands", async (ctx) => {
    needProcesses(h, ctx);
    await need(h, ctx, "locking");
    const holder = startChild({ driver: h.child(), mode: "hold-lock" });
    await holder.waitFor((line) => line.locked === true, "taking the lock");
    holder.process.kill("SIGKILL");
    await holder.exited;
    const repository = await h.repository();
    const task = makeTask({ id: "after-the-holder-died" });
    await afterTakeover(h, () => repository.save(task));
    expect(await (await h.repository()).loadById(task.id)).toEqual(task);
  });
}
