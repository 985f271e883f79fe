import { expect, it } from "vitest";
import { runChild } from "../child-driver.js";
import { makeTask, sleep } from "../fixtures.js";
import type { Harness } from "../harness.js";
import { need, needProcesses, until } from "../waiting.js";

export function watchingTests(h: Harness): void {
  it("watch() reports a change by another instance and by another process; after unsubscribing, nothing", async (ctx) => {
    needProcesses(h, ctx);
    await need(h, ctx, "changeNotification");
    const writer = await h.manager();
    const id = await writer.create({ title: "watched" });
    const watcher = await h.driver();
    let calls = 0;
    // watch() may return a promise that resolves once the subscription is live.
    const stop = await watcher.watch?.(() => {
      calls++;
    });
    if (!stop) throw new Error("conformance: the driver declares changeNotification but has no watch()");
    await watcher.loadData(); // a driver may subscribe asynchronously; a load after watch() waits for it
    await writer.appendOutput(id, "from another instance");
    await until(() => calls > 0, "watch() to report another instance's write");
    const seen = calls;
    await runChild({ driver: h.child(), mode: "append", taskId: id, line: "from another process" });
    await until(() => calls > seen, "watch() to report another process's write");
    stop();
    const stopped = calls;
    await writer.appendOutput(id, "after unsubscribing");
    await runChild({ driver: h.child(), mode: "append", taskId: id, line: "after unsubscribing, from a process" });
    await sleep(500);
    expect(calls).toBe(stopped);
  });

  it("a TaskManager sees another process's change without being asked to refresh", async (ctx) => {
    needProcesses(h, ctx);
    await need(h, ctx, "changeNotification");
    const repository = await h.repository();
    await repository.save(makeTask({ id: "followed" }));
    const manager = await h.manager();
    expect(manager.findById("followed")?.logs).toEqual([]);
    await runChild({ driver: h.child(), mode: "append", taskId: "followed", line: "seen by the manager" });
    await until(() => manager.findById("followed")?.logs.length === 1, "the manager to pick up another process's append");
    expect(manager.findById("followed")?.logs.map((entry) => entry.output)).toEqual(["seen by the manager"]);
  });
}
