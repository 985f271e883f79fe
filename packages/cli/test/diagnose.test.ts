import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import path from "node:path";
import type { StoredError } from "@taskstore/core";
import { type RedisServer, startRedis } from "@taskstore/test-services";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DiagnoseReport, json, makeHome, ok, PACKAGE_DIR, start, within } from "./helpers.js";

// `diagnose --persistence` lists the storage errors of every process that used the store: each
// test has another real process (test/fixtures/agent.mjs, a TaskManager) meet an error, and
// the CLI, a third process, report it.

type Report = DiagnoseReport & { recentErrors: StoredError[] };

const fixture = (name: string) => path.join(PACKAGE_DIR, "test", "fixtures", name);

/** An agent process on `store`: send it lines ("create TITLE", "flush"), read its JSON lines. */
function startAgent(store: string, env: NodeJS.ProcessEnv, lockTimeoutMs?: number) {
  const agent = start([fixture("agent.mjs"), store, ...(lockTimeoutMs ? [String(lockTimeoutMs)] : [])], { env, node: true });
  const lines = () =>
    agent.stdout
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return {
    ...agent,
    pid: agent.child.pid as number,
    send: (line: string) => agent.child.stdin?.write(`${line}\n`),
    lines,
    /** Sends "flush" until the agent's flush succeeds (a server may still be reconnecting). */
    async flushed(): Promise<void> {
      for (let attempt = 0; attempt < 100; attempt++) {
        const before = lines().filter((line) => "flushed" in line).length;
        agent.child.stdin?.write("flush\n");
        while (lines().filter((line) => "flushed" in line).length === before) await sleep(20);
        if (
          lines()
            .filter((line) => "flushed" in line)
            .at(-1)?.flushed === true
        )
          return;
        await sleep(100);
      }
      throw new Error(`the agent never flushed: ${agent.stdout} ${agent.stderr}`);
    },
    async stop(): Promise<void> {
      agent.child.stdin?.end();
      await within(agent.exited, 30_000, "the agent");
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("taskstore diagnose --persistence and the errors of other processes", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  let opts: { env: NodeJS.ProcessEnv };
  let server: RedisServer;

  beforeAll(async () => {
    home = await makeHome();
    opts = { env: home.env };
    server = await startRedis({ dedicated: true, appendonly: true });
  });
  afterAll(async () => {
    await server?.stop();
    await home?.cleanup();
  });

  it("lists a lock timeout another process met on a JSON file store, with its pid and host, newest first", async () => {
    const file = path.join(home.dir, "locked", "tasks.json");
    const store = `file:${file}`;
    await ok(["--store", store, "add", "before"], opts);
    const agent = startAgent(store, home.env, 300);
    try {
      await agent.waitFor(/"ready"/);
      const holder = start([fixture("hold-lock.mjs"), file], { env: home.env, node: true });
      await holder.waitFor(/locked/);
      agent.send("create made while another process held the lock");
      // LOCK_TIMEOUT after 300 ms: the create succeeds in memory and waits for the lock.
      await agent.waitFor(/"created":"[^"]+","pending":1/);
      holder.child.stdin?.end();
      await within(holder.exited, 30_000, "the lock holder");
      await agent.flushed();

      const report = await json<Report>(["--store", store, "diagnose", "--persistence"], opts);
      const theirs = report.recentErrors.filter((error) => error.pid === agent.pid);
      expect(theirs.length).toBeGreaterThan(0);
      expect(theirs[0]).toMatchObject({ code: "LOCK_TIMEOUT", operation: "create", host: hostname() });
      const times = report.recentErrors.map((error) => error.at);
      expect(times).toEqual([...times].sort((a, b) => b - a));
      expect(report.recentErrors.length).toBeLessThanOrEqual(50);

      const text = await ok(["--store", store, "diagnose", "--persistence"], opts);
      expect(text).toMatch(/^recent errors +\d+, newest first$/m);
      expect(text).toMatch(new RegExp(`^  \\S+ LOCK_TIMEOUT \\(create\\) pid ${agent.pid} on ${hostname()}: `, "m"));
      expect(text).not.toMatch(/pid \d+ \(this run\)/);
    } finally {
      await agent.stop();
    }
  });

  it("lists an outage another process met on a Redis store, once the server is back and that process wrote", async () => {
    const store = `${server.url}/0?prefix=diagnose-${randomUUID().slice(0, 8)}`;
    await ok(["--store", store, "add", "before"], opts);
    const agent = startAgent(store, home.env);
    try {
      await agent.waitFor(/"ready"/);
      await server.kill();
      agent.send("create made while the server was down");
      await agent.waitFor(/"created":"[^"]+","pending":1/);
      await server.restart();
      await agent.flushed();

      const report = await json<Report>(["--store", store, "diagnose", "--persistence"], opts);
      expect(report.driver).toBe("redis");
      const theirs = report.recentErrors.filter((error) => error.pid === agent.pid);
      expect(theirs.length).toBeGreaterThan(0);
      expect(theirs.every((error) => error.code === "STORAGE_UNAVAILABLE" && error.host === hostname())).toBe(true);
      expect(theirs.map((error) => error.operation)).toContain("create");
      const text = await ok(["--store", store, "diagnose", "--persistence"], opts);
      expect(text).toMatch(new RegExp(`STORAGE_UNAVAILABLE \\(create\\) pid ${agent.pid} on ${hostname()}: `));
      expect((await json<{ tasks: { title: string }[] }>(["--store", store, "list"], opts)).tasks.map((task) => task.title)).toContain(
        "made while the server was down",
      );
    } finally {
      await agent.stop();
    }
  });

  it("shows this run's operations with latencies and rates next to the counts", async () => {
    const store = `file:${path.join(home.dir, "plain", "tasks.json")}`;
    await ok(["--store", store, "add", "one"], opts);
    const text = await ok(["--store", store, "diagnose"], opts);
    expect(text).toMatch(/^operations +count +failed +p50 +p95 +max +rate +last min +\(this run\)$/m);
    expect(text).toMatch(/^ {2}load +1 +0 +[\d.]+ m?s +[\d.]+ m?s +[\d.]+ m?s +[\d.]+\/s +[\d.]+\/s$/m);
    expect(text).toMatch(/^recent errors +none$/m);
    const report = await json<Report & { metrics: { operations: Record<string, { p95Ms: number; ratePerSec: number }> } }>(
      ["--store", store, "diagnose"],
      opts,
    );
    expect(report.metrics.operations.load).toMatchObject({ p95Ms: expect.any(Number), ratePerSec: expect.any(Number) });
    expect(report.recentErrors).toEqual([]);
  });
});
