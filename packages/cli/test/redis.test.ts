import { randomUUID } from "node:crypto";
import path from "node:path";
import { type StoredTask, TaskRepository } from "@taskstore/core";
import { JSONFileStorageDriver } from "@taskstore/driver-json-file";
import { RedisStorageDriver } from "@taskstore/driver-redis";
import { type RedisServer, startRedis } from "@taskstore/test-services";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DiagnoseReport, json, makeHome, ok, run, start } from "./helpers.js";

// The main flows against a real Redis server (tools/test-services: TASKSTORE_REDIS_URL, Docker, or a spawned redis-server).
describe("taskstore against Redis", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  let server: RedisServer;
  let opts: { env: NodeJS.ProcessEnv };
  let store: string;
  let prefix: string;
  const ts = (...args: string[]) => ["--store", store, ...args];

  beforeAll(async () => {
    home = await makeHome();
    server = await startRedis();
    prefix = `cli-${randomUUID().slice(0, 8)}`;
    store = `${server.url}/0?prefix=${prefix}`;
    opts = { env: home.env };
  });
  afterAll(async () => {
    await server?.stop();
    await home?.cleanup();
  });

  it("add, the status verbs, progress, log, link, assign, show, list and rm work on a redis: store", async () => {
    const { id: parent } = await json<{ id: string }>(ts("add", "Deploy"), opts);
    const { id: kid } = await json<{ id: string }>(ts("add", "Migrate DB", "--meta", "env=prod"), opts);
    await ok(ts("link", parent, kid), opts);
    await ok(ts("assign", kid, "db-agent"), opts);
    expect(await json(ts("start", kid), opts)).toEqual({ id: kid, status: "running" });
    await ok(ts("progress", kid, "75", "--message", "indexes"), opts);
    await ok(ts("log", kid, "ALTER TABLE done", "--type", "stdout"), opts);
    expect(await json(ts("pause", kid), opts)).toEqual({ id: kid, status: "paused" });
    expect(await json(ts("resume", kid), opts)).toEqual({ id: kid, status: "running" });
    expect(await json(ts("complete", kid), opts)).toEqual({ id: kid, status: "completed" });
    const shown = await json<StoredTask>(ts("show", kid), opts);
    expect(shown).toMatchObject({ id: kid, parentId: parent, assignedTo: "db-agent", status: "completed", metadata: { env: "prod" } });
    expect(shown.progress.percent).toBe(100);
    expect(shown.logs.map((e) => e.output)).toEqual(["ALTER TABLE done"]);
    const { tasks } = await json<{ tasks: { id: string; children: string[] }[] }>(ts("list", "--all"), opts);
    expect(tasks.map((t) => t.id)).toEqual([parent, kid]);
    expect(tasks[0]?.children).toEqual([kid]);
    expect((await run(ts("start", kid), opts)).code).toBe(4);
    expect((await json<{ removed: string[] }>(ts("rm", parent), opts)).removed.sort()).toEqual([parent, kid].sort());
    expect((await json<{ tasks: unknown[] }>(ts("list"), opts)).tasks).toEqual([]);
  });

  it("log --follow sees another process's append through the change notification, not by polling", async () => {
    const { id } = await json<{ id: string }>(ts("add", "followed on redis"), opts);
    await ok(ts("log", id, "already there"), opts);
    // An interval of an hour: with a notifying store the safety-net poll runs every ten of them,
    // so a later entry can only arrive through the notification.
    const follower = start(ts("log", id, "--follow", "--interval", "1h", "--json"), opts);
    try {
      // Printed once loaded, and the follower subscribes before it loads: the next append is news.
      await follower.waitFor(/already there/);
      await ok(ts("log", id, "from another process", "--type", "stdout"), opts);
      await follower.waitFor(/from another process/);
    } finally {
      follower.child.kill("SIGINT");
    }
    expect(await follower.exited).toBe(0);
    const outputs = follower.stdout
      .trim()
      .split("\n")
      .map((line) => (JSON.parse(line) as { output: string }).output);
    expect(outputs).toEqual(["already there", "from another process"]);
  });

  it("diagnose names the redis driver and its capabilities, and never the password", async () => {
    const report = await json<DiagnoseReport>(ts("diagnose", "--persistence"), opts);
    expect(report.driver).toBe("redis");
    expect(report.capabilities).toMatchObject({ incremental: true, changeNotification: true, persistent: true });
    expect(report.schemaVersion).toBe("1.0.0");
    expect(report.store).toBe(store);
    // A password in the URL: redis-server without AUTH refuses it, and it must not be printed either way.
    const withPassword = store.replace("redis://", "redis://default:s3cr3t-pw@");
    const result = await run(["--store", withPassword, "diagnose", "--json"], opts);
    expect(`${result.stdout}${result.stderr}`).not.toContain("s3cr3t-pw");
  });

  it("copy from a JSON file to redis carries every task, log and relation", async () => {
    const file = path.join(home.dir, "to-redis.json");
    const { id: a } = await json<{ id: string }>(["--store", `file:${file}`, "add", "A"], opts);
    const { id: b } = await json<{ id: string }>(["--store", `file:${file}`, "add", "B", "--parent", a], opts);
    await ok(["--store", `file:${file}`, "log", b, "some output"], opts);
    const target = `${server.url}/0?prefix=${prefix}-copy`;
    expect(await json(["copy", "--from", `file:${file}`, "--to", target], opts)).toMatchObject({ tasks: 2, logEntries: 1 });
    const source = new TaskRepository({ driver: new JSONFileStorageDriver(file) });
    const copied = new TaskRepository({ driver: new RedisStorageDriver({ url: server.url, prefix: `${prefix}-copy` }) });
    try {
      expect(await copied.loadAll()).toEqual(await source.loadAll());
    } finally {
      await source.close();
      await copied.close();
    }
  });
});
