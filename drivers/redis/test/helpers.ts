import { randomUUID } from "node:crypto";
import type { ConformanceStore } from "@taskstore/conformance";
import { RedisStorageDriver, type RedisStorageDriverOptions } from "@taskstore/driver-redis";
import { Cluster, Redis } from "ioredis";

/** Where a test's stores live: a single server's URL or a cluster's startup nodes. */
export type Target = { url: string } | { nodes: { host: string; port: number }[] };

export function uniquePrefix(name = "test"): string {
  return `${name}-${randomUUID().slice(0, 8)}`;
}

/** A plain ioredis client on the target, for looking at keys from outside the driver. */
export function rawClient(target: Target): Redis | Cluster {
  return "url" in target ? new Redis(target.url) : new Cluster(target.nodes);
}

/** Deletes every key of a store (all its namespaces), scanning each master; never KEYS. */
export async function deleteStore(target: Target, prefix: string): Promise<void> {
  const client = rawClient(target);
  try {
    await client.ping(); // connected: a cluster client knows its nodes only then
    const nodes = client instanceof Cluster ? client.nodes("master") : [client];
    for (const node of nodes) {
      let cursor = "0";
      do {
        const [next, keys] = await node.scan(cursor, "MATCH", `{${prefix}}:*`, "COUNT", 1000);
        cursor = next;
        for (const key of keys) await client.del(key);
      } while (cursor !== "0");
    }
  } finally {
    client.disconnect();
  }
}

/** `setup()` for the conformance suite: a fresh prefix per test, deleted afterwards. */
export function conformanceSetup(target: Target, options: Partial<RedisStorageDriverOptions> = {}): () => Promise<ConformanceStore> {
  return async () => {
    const prefix = uniquePrefix("conformance");
    const driverOptions = { ...target, prefix, lockTimeoutMs: 5_000, ...options };
    return {
      open: async () => new RedisStorageDriver(driverOptions),
      teardown: () => deleteStore(target, prefix),
      readRaw: () => storeValues(target, prefix),
      child: { module: import.meta.resolve("@taskstore/driver-redis"), export: "RedisStorageDriver", args: [driverOptions] },
    };
  };
}

/** Every value of every key of a store, read by its type (for the suite's no-plaintext check). */
export async function storeValues(target: Target, prefix: string): Promise<string> {
  const client = rawClient(target);
  const out: string[] = [];
  try {
    await client.ping(); // connected: a cluster client knows its nodes only then
    const nodes = client instanceof Cluster ? client.nodes("master") : [client];
    for (const node of nodes) {
      let cursor = "0";
      do {
        const [next, keys] = await node.scan(cursor, "MATCH", `{${prefix}}:*`, "COUNT", 1000);
        cursor = next;
        for (const key of keys) {
          const type = await client.type(key);
          if (type === "string") out.push((await client.get(key)) ?? "");
          else if (type === "list") out.push(...(await client.lrange(key, 0, -1)));
          else if (type === "hash") out.push(...Object.entries(await client.hgetall(key)).flat());
          else if (type === "set") out.push(...(await client.smembers(key)));
          else if (type === "zset") out.push(...(await client.zrange(key, 0, -1)));
          else out.push(`(${type})`);
        }
      } while (cursor !== "0");
    }
  } finally {
    client.disconnect();
  }
  return out.join("\n");
}
