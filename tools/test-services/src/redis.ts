import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ContainerInfo, type ContainerServer, imageFor, listenAddress, networking, startContainer, tcpExchange } from "./container.js";
import { useDocker } from "./docker.js";
import { ServiceUnavailableError } from "./errors.js";
import { freePort, PortTakenError, type SpawnedServer, spawnServer, stopServer } from "./processes.js";

const READY = /ready to accept connections/i;
const PORT_TAKEN = /Address already in use/i;
const INSTALL =
  "Install Redis (`apt-get install -y redis-server redis-tools` on Debian/Ubuntu, `brew install redis` on macOS), " +
  "or start a Docker engine, or set TASKSTORE_REDIS_URL to a server the tests may write to.";

export interface StartRedisOptions {
  /** Log every write to an append-only file, fsynced per write (`appendfsync always`). Default false. */
  appendonly?: boolean;
  /**
   * A server of this run's own, that `kill()` and `restart()` act on: `TASKSTORE_REDIS_URL` is
   * not used. Default false.
   */
  dedicated?: boolean;
}

export interface RedisServer {
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Where the server came from. */
  readonly source: "env" | "docker" | "local";
  /** The container it runs in, when `source` is "docker". */
  readonly container?: ContainerInfo;
  /** Stops the server and deletes its data. For a server from the environment: nothing. */
  stop(): Promise<void>;
  /** SIGKILLs the server, keeping its data folder (a crash). */
  kill(): Promise<void>;
  /** Starts the server again, on the same port and data folder (after `kill()`, or while running). */
  restart(): Promise<void>;
}

export interface RedisCluster {
  /** One `redis://` URL per master. */
  readonly urls: string[];
  /** Startup nodes in the shape ioredis' `Cluster` takes. */
  readonly nodes: { host: string; port: number }[];
  readonly source: "env" | "docker" | "local";
  /** The containers of the masters, in `urls` order, when `source` is "docker". */
  readonly containers?: ContainerInfo[];
  stop(): Promise<void>;
}

/**
 * A Redis server for this test run: `TASKSTORE_REDIS_URL` when set (unless `dedicated`), else a
 * container when a Docker engine answers, else `redis-server` spawned on a free loopback port in
 * a temp folder. Throws `ServiceUnavailableError` (saying what to install) when none can be had.
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServer> {
  const fromEnv = process.env.TASKSTORE_REDIS_URL;
  if (fromEnv && !options.dedicated) return envServer(fromEnv);
  const node = (await useDocker("Redis", INSTALL))
    ? ((await startContainerNodes(1, options.appendonly ?? false, false))[0] as Node)
    : await startLocalNode(options.appendonly ?? false, false);
  return {
    url: `redis://${node.host}:${node.port}`,
    host: node.host,
    port: node.port,
    source: node.source,
    ...(node.container ? { container: node.container } : {}),
    stop: () => node.stop(),
    kill: () => node.kill(),
    restart: () => node.restart(),
  };
}

/**
 * A Redis Cluster of `masters` masters (no replicas), joined with `redis-cli --cluster create`.
 * `TASKSTORE_REDIS_CLUSTER_URLS` (comma-separated) wins when set.
 */
export async function startRedisCluster(options: { masters?: number } = {}): Promise<RedisCluster> {
  const fromEnv = process.env.TASKSTORE_REDIS_CLUSTER_URLS;
  if (fromEnv) {
    const urls = fromEnv.split(",").map((url) => url.trim());
    const nodes = urls.map((url) => ({ host: new URL(url).hostname, port: Number(new URL(url).port || 6379) }));
    return { urls, nodes, source: "env", stop: async () => undefined };
  }
  const masters = options.masters ?? 3;
  if (masters < 3) throw new Error("test-services: a Redis Cluster needs at least 3 masters");
  const started: Node[] = [];
  try {
    if (await useDocker("Redis", INSTALL)) started.push(...(await startContainerNodes(masters, false, true)));
    else for (let i = 0; i < masters; i++) started.push(await startLocalNode(false, true));
    // The nodes reach each other on 127.0.0.1: the host's network, or (port mapping) the network
    // of the first node's container, which the others share.
    const addresses = started.map((node) => `127.0.0.1:${node.port}`);
    const first = started[0] as Node;
    const created = await first.cli(["--cluster", "create", ...addresses, "--cluster-replicas", "0", "--cluster-yes"]);
    if (created.exitCode !== 0) throw new Error(`test-services: redis-cli --cluster create failed:\n${created.output}`);
    await waitFor(async () => {
      for (const node of started) {
        const info = await node.cli(["-p", String(node.port), "cluster", "info"]);
        if (!info.output.includes("cluster_state:ok")) return false;
      }
      return true;
    }, "the cluster to report cluster_state:ok");
  } catch (error) {
    await Promise.all(started.map((node) => node.stop()));
    throw error;
  }
  const containers = started.flatMap((node) => (node.container ? [node.container] : []));
  return {
    urls: started.map((node) => `redis://${node.host}:${node.port}`),
    nodes: started.map((node) => ({ host: node.host, port: node.port })),
    source: (started[0] as Node).source,
    ...(containers.length > 0 ? { containers } : {}),
    stop: async () => {
      await Promise.all(started.map((node) => node.stop()));
    },
  };
}

function envServer(url: string): RedisServer {
  const parsed = new URL(url);
  const refuse = async () => {
    throw new Error("test-services: the server from TASKSTORE_REDIS_URL cannot be killed or restarted; ask for { dedicated: true }");
  };
  return {
    url,
    host: parsed.hostname,
    port: Number(parsed.port || 6379),
    source: "env",
    stop: async () => undefined,
    kill: refuse,
    restart: refuse,
  };
}

/** One redis-server, local or in a container, that can be stopped, killed and restarted. */
interface Node {
  host: string;
  port: number;
  source: "docker" | "local";
  container?: ContainerInfo;
  /** Runs redis-cli beside the server. */
  cli(args: string[]): Promise<{ exitCode: number; output: string }>;
  stop(): Promise<void>;
  kill(): Promise<void>;
  restart(): Promise<void>;
}

/**
 * `busPort` undefined: the cluster bus on the default port + 10000 (every Redis version);
 * a number: `--cluster-port` (Redis 7+), for local servers, whose port + 10000 may be past 65535.
 */
function serverArgs(
  port: number,
  busPort: number | undefined,
  dir: string,
  appendonly: boolean,
  cluster: boolean,
  bind = "127.0.0.1",
): string[] {
  const args = ["--port", String(port), "--bind", bind, "--save", "", "--dir", dir, "--daemonize", "no", "--logfile", ""];
  // Clients of a published port come from the bridge, not loopback: protected mode would refuse them.
  if (bind !== "127.0.0.1") args.push("--protected-mode", "no");
  args.push("--appendonly", appendonly ? "yes" : "no", "--appendfsync", "always");
  if (cluster) {
    args.push("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000");
    if (busPort !== undefined) args.push("--cluster-port", String(busPort));
  }
  return args;
}

/** True when `port` can be bound on loopback right now. */
async function portFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A free port whose cluster bus port (+ 10000) is free too. */
async function freeClusterPort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = await freePort();
    if (port + 10_000 > 65_535 || taken.has(port) || taken.has(port + 10_000)) continue;
    if (await portFree(port + 10_000)) return port;
  }
  throw new Error("test-services: found no free port whose port + 10000 is free too");
}

/**
 * `count` redis-server containers. With host networking each has the host's network; with port
 * mapping the first publishes every node's port and the others join its network, so the nodes
 * of a cluster reach each other on 127.0.0.1 as they do on the host.
 */
async function startContainerNodes(count: number, appendonly: boolean, cluster: boolean): Promise<Node[]> {
  const image = imageFor("redis");
  const taken = new Set<number>();
  const ports: number[] = [];
  for (let i = 0; i < count; i++) {
    const port = cluster ? await freeClusterPort(taken) : await freePort();
    taken.add(port).add(port + 10_000);
    ports.push(port);
  }
  const nodes: Node[] = [];
  const servers: ContainerServer[] = [];
  try {
    for (const [i, port] of ports.entries()) {
      const first = servers[0];
      const server = await startContainer({
        service: "redis",
        image,
        command: ["redis-server", ...serverArgs(port, undefined, "/data", appendonly, cluster, listenAddress())],
        ports: i === 0 && networking() === "mapped" ? ports : [port],
        ...(first && networking() === "mapped" ? { joinNetworkOf: first.id } : {}),
        wait: (Wait) => Wait.forLogMessage(READY),
        // "-LOADING" while it reads its append-only file back: ready on "+PONG".
        ready: async (self) => /^\+PONG\r\n/.test(await tcpExchange(self.host, port, "PING\r\n", /\r\n/)),
        startupTimeoutMs: 30_000,
      });
      servers.push(server);
      nodes.push({
        host: server.host,
        port,
        source: "docker",
        container: { id: server.id, image: server.image },
        cli: (args) => server.exec(["redis-cli", ...args]),
        stop: () => server.stop(),
        kill: () => server.kill("SIGKILL"),
        restart: () => server.restart(),
      });
    }
  } catch (error) {
    // Joined containers first: the first one holds their network.
    for (const server of servers.reverse()) await server.stop().catch(() => undefined);
    throw new ServiceUnavailableError(
      "Redis",
      `Docker answered but the ${image} container did not start (${(error as Error).message}). ${INSTALL}`,
      { cause: error },
    );
  }
  return nodes;
}

async function startLocalNode(appendonly: boolean, cluster: boolean): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), "taskstore-redis-"));
  let port = 0;
  let busPort = 0;
  let server: SpawnedServer | undefined;
  const launch = async (): Promise<SpawnedServer> => {
    try {
      return await spawnServer({
        command: "redis-server",
        args: serverArgs(port, busPort, dir, appendonly, cluster),
        cwd: dir,
        ready: READY,
        portTaken: PORT_TAKEN,
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        throw new ServiceUnavailableError("Redis", `redis-server is not on PATH and no Docker engine answers. ${INSTALL}`, {
          cause: error,
        });
      }
      throw error;
    }
  };
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    busPort = await freePort();
    try {
      server = await launch();
      break;
    } catch (error) {
      if (!(error instanceof PortTakenError) || attempt >= 5) {
        await rm(dir, { recursive: true, force: true });
        throw error;
      }
    }
  }
  return {
    host: "127.0.0.1",
    port,
    source: "local",
    cli: (args) => runCli(["-p", String(port), ...args]),
    stop: async () => {
      if (server) await stopServer(server);
      await rm(dir, { recursive: true, force: true });
    },
    kill: async () => {
      if (server) await stopServer(server, "SIGKILL");
    },
    restart: async () => {
      if (server) await stopServer(server);
      // The port is ours until the old process is gone; a restart reuses it on purpose.
      server = await launch();
    },
  };
}

function runCli(args: string[]): Promise<{ exitCode: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("redis-cli", args, { stdio: ["ignore", "pipe", "pipe"], timeout: 30_000, killSignal: "SIGKILL" });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once("error", (error) => {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        reject(new ServiceUnavailableError("Redis", `redis-cli is not on PATH. ${INSTALL}`, { cause: error }));
      } else reject(error);
    });
    child.once("exit", (code) => resolve({ exitCode: code ?? 1, output }));
  });
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`test-services: timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
