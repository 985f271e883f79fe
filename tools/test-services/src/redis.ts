import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ContainerServer } from "./container.js";
import { dockerReachable } from "./docker.js";
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
  const node = await startNode(options.appendonly ?? false, false);
  return {
    url: `redis://127.0.0.1:${node.port}`,
    host: "127.0.0.1",
    port: node.port,
    source: node.source,
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
    for (let i = 0; i < masters; i++) started.push(await startNode(false, true));
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
  return {
    urls: started.map((node) => `redis://127.0.0.1:${node.port}`),
    nodes: started.map((node) => ({ host: "127.0.0.1", port: node.port })),
    source: (started[0] as Node).source,
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
  port: number;
  source: "docker" | "local";
  /** Runs redis-cli beside the server. */
  cli(args: string[]): Promise<{ exitCode: number; output: string }>;
  stop(): Promise<void>;
  kill(): Promise<void>;
  restart(): Promise<void>;
}

function serverArgs(port: number, busPort: number, dir: string, appendonly: boolean, cluster: boolean): string[] {
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir, "--daemonize", "no", "--logfile", ""];
  args.push("--appendonly", appendonly ? "yes" : "no", "--appendfsync", "always");
  if (cluster) {
    // cluster-port (Redis 7): the default bus port, port + 10000, may be past 65535 or taken.
    args.push("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000");
    args.push("--cluster-port", String(busPort));
  }
  return args;
}

async function startNode(appendonly: boolean, cluster: boolean): Promise<Node> {
  if (await dockerReachable()) return startContainerNode(appendonly, cluster);
  return startLocalNode(appendonly, cluster);
}

async function startContainerNode(appendonly: boolean, cluster: boolean): Promise<Node> {
  const port = await freePort();
  const busPort = await freePort();
  const image = process.env.TASKSTORE_REDIS_IMAGE ?? "redis:7";
  let server: ContainerServer;
  try {
    // Loaded only here: testcontainers (and dockerode) is a heavy import that most runs never need.
    const { startContainer } = await import("./container.js");
    server = await startContainer(image, ["redis-server", ...serverArgs(port, busPort, "/data", appendonly, cluster)], READY);
  } catch (error) {
    throw new ServiceUnavailableError(
      "Redis",
      `Docker answered but the ${image} container did not start (${(error as Error).message}). ${INSTALL}`,
      {
        cause: error,
      },
    );
  }
  return {
    port,
    source: "docker",
    cli: (args) => server.exec(["redis-cli", ...args]),
    stop: () => server.stop(),
    kill: () => server.kill(),
    restart: () => server.restart(),
  };
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
