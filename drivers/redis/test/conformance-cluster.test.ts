import { describeStorageDriver } from "@taskstore/conformance";
import { EventBus, TaskManager, TaskRepository } from "@taskstore/core";
import { RedisStorageDriver } from "@taskstore/driver-redis";
import { startRedisCluster } from "@taskstore/test-services";
import { Cluster } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { conformanceSetup, deleteStore, uniquePrefix } from "./helpers.js";

const cluster = await startRedisCluster({ masters: 3 });
afterAll(() => cluster.stop());

describeStorageDriver({ name: "redis (3-master cluster)", setup: conformanceSetup({ nodes: cluster.nodes }) });

describe("RedisStorageDriver on a cluster", () => {
  it("keeps every key of a store, its backup and what restore moved aside in one slot", async () => {
    const prefix = uniquePrefix("slot");
    const repository = new TaskRepository({ driver: new RedisStorageDriver({ nodes: cluster.nodes, prefix }) });
    const manager = new TaskManager(new EventBus(), repository);
    await manager.loadFromRepository();
    for (let i = 0; i < 5; i++) await manager.appendOutput(await manager.create({ title: `t${i}` }), "line");
    await repository.backup();
    await repository.restore();
    await manager.close();
    const raw = new Cluster(cluster.nodes);
    await raw.ping(); // connected: the node list is known
    const slots = new Set<number>();
    let keys = 0;
    for (const node of raw.nodes("master")) {
      let cursor = "0";
      do {
        const [next, found] = await node.scan(cursor, "MATCH", `{${prefix}}:*`, "COUNT", 1_000);
        cursor = next;
        keys += found.length;
        for (const key of found) slots.add((await node.call("CLUSTER", "KEYSLOT", key)) as number);
      } while (cursor !== "0");
    }
    raw.disconnect();
    expect(keys).toBeGreaterThan(30);
    expect(slots.size).toBe(1);
    await deleteStore({ nodes: cluster.nodes }, prefix);
  });

  it("watch() reports another instance's commit across the cluster", async () => {
    const prefix = uniquePrefix("watch");
    const watcher = new RedisStorageDriver({ nodes: cluster.nodes, prefix });
    await watcher.initialize();
    let calls = 0;
    const stop = watcher.watch(() => calls++);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const other = new TaskRepository({ driver: new RedisStorageDriver({ nodes: cluster.nodes, prefix }) });
    await other.saveMany([]); // nothing: no commit, no notification
    const manager = new TaskManager(new EventBus(), other);
    await manager.create({ title: "announced" });
    const deadline = Date.now() + 10_000;
    while (calls === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
    expect(calls).toBeGreaterThan(0);
    stop();
    await Promise.all([manager.close(), watcher.close()]);
    await deleteStore({ nodes: cluster.nodes }, prefix);
  });
});
