import { expect, it } from "vitest";
import { startChild } from "../child-driver.js";
import { makeTask, sleep } from "../fixtures.js";
import type { Harness } from "../harness.js";
import { need, needProcesses } from "../waiting.js";
import { runWorkload } from "../workload.js";

export function processTests(h: Harness): void {
  it("several processes making mixed calls on one store lose nothing and apply nothing twice", async (ctx) => {
    needProcesses(h, ctx);
    const { workers, operations } = h.processOptions;
    const { reports, problems } = await runWorkload({ driver: h.child(), processes: workers, operations, concurrency: 4 });
    expect(problems).toEqual([]);
    expect(reports.map((report) => report.acknowledged)).toEqual(reports.map(() => operations));
  });

  it("while a child process holds acquireLock(), this process's write waits, then lands after the holder releases", async (ctx) => {
    needProcesses(h, ctx);
    await need(h, ctx, "locking");
    const holder = startChild({ driver: h.child(), mode: "hold-lock" });
    try {
      await holder.waitFor((line) => line.locked === true, "taking the lock");
      const writer = await h.repository();
      const observer = await h.driver();
      let landed = false;
      const task = makeTask({ id: "under-a-child-lock" });
      const saving = writer.save(task).then(() => {
        landed = true;
      });
      await sleep(500);
      expect(landed).toBe(false);
      // Only the holder releases: an instance that does not hold the lock frees nothing.
      await (await h.driver()).releaseLock();
      await sleep(300);
      expect(landed).toBe(false);
      expect((await observer.loadData()).tasks).toHaveLength(0);
      holder.send("release");
      await holder.waitFor((line) => line.result === "released", "releasing the lock");
      await saving;
      expect((await observer.loadData()).tasks.map((t) => t.id)).toEqual([task.id]);
    } finally {
      holder.process.kill("SIGKILL");
      await holder.exited;
    }
  });
}
