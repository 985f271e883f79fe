import { Cluster, type ClusterNode, Redis, type RedisOptions } from "ioredis";
import { errors } from "./redis-errors.js";

/** What the driver's options say about the connection. */
export interface ClientOptions {
  url?: string;
  nodes?: (string | ClusterNode)[];
  client?: Redis | Cluster;
  redisOptions?: RedisOptions;
  commandTimeoutMs: number;
}

/**
 * The caller's client as it is, or a new one for `nodes` (a Cluster) or `url`. A client the
 * driver makes fails fast while the server is away (no offline queue, no resending of commands in
 * flight), so the repository degrades to memory and retries instead of commands hanging; it
 * connects at `initialize()`. `owned`: the driver made it, and closes it.
 */
export function createClient(options: ClientOptions): { client: Redis | Cluster; owned: boolean } {
  if (options.client) return { client: options.client, owned: false };
  const timeout = options.commandTimeoutMs;
  const failFast: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: timeout,
    commandTimeout: timeout,
    retryStrategy: (times) => Math.min(50 * times, 1_000),
  };
  let client: Redis | Cluster;
  if (options.nodes) {
    const { lazyConnect: _lazy, ...perNode } = failFast;
    client = new Cluster(options.nodes as ClusterNode[], {
      lazyConnect: true,
      enableOfflineQueue: false,
      clusterRetryStrategy: (times) => Math.min(100 * times, 1_000),
      // Not lazyConnect: the cluster manages its node connections (forcing it either way made
      // connect() hang now and then).
      redisOptions: { ...perNode, ...options.redisOptions },
    });
  } else if (options.url) {
    client = new Redis(options.url, { ...failFast, ...options.redisOptions });
  } else {
    throw errors.invalidOption("url", "give the driver a `url`, cluster `nodes` or a `client`");
  }
  // ioredis reports connection trouble as "error" events; without a listener Node would crash.
  client.on("error", () => undefined);
  return { client, owned: true };
}

/**
 * A connection of its own for SUBSCRIBE (a subscribed connection can do nothing else). Unlike the
 * command client it queues while offline and resubscribes after a reconnect (ioredis defaults).
 */
export function subscriberFor(client: Redis | Cluster): Redis | Cluster {
  const subscriber =
    client instanceof Cluster
      ? client.duplicate(undefined, { enableOfflineQueue: true, lazyConnect: false })
      : client.duplicate({ enableOfflineQueue: true, lazyConnect: false, maxRetriesPerRequest: null });
  subscriber.on("error", () => undefined);
  return subscriber;
}

/** `host:port` of every primary, for `describe()`. */
export function addressesOf(client: Redis | Cluster): string[] {
  const address = (node: Redis) => `${node.options.host ?? "localhost"}:${node.options.port ?? 6379}`;
  return client instanceof Cluster ? client.nodes("master").map(address) : [address(client)];
}
