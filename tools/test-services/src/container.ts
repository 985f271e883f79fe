import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { appendFileSync } from "node:fs";
import { connect } from "node:net";
import type { GenericContainer, StartedTestContainer, WaitStrategy } from "testcontainers";

/**
 * Which images the Docker path runs, and how the host reaches them: the one switch,
 * `TASKSTORE_TEST_IMAGES`.
 * - `official` (the default): the official images from Docker Hub (`redis:7`, `postgres:15`,
 *   MinIO), with normal port mapping.
 * - `local`: the images `images/build-images.sh` makes from the host's Debian packages
 *   (`taskstore-test/<name>:local`), with host networking (no registry and no bridge needed).
 * Each image can still be named on its own: `TASKSTORE_REDIS_IMAGE`, `TASKSTORE_POSTGRES_IMAGE`,
 * `TASKSTORE_S3_IMAGE`.
 */
export type ImageSet = "local" | "official";
export type Service = "redis" | "postgres" | "s3";

export function imageSet(): ImageSet {
  const value = process.env.TASKSTORE_TEST_IMAGES ?? "official";
  if (value !== "local" && value !== "official") {
    throw new Error(`test-services: TASKSTORE_TEST_IMAGES must be "local" or "official", not "${value}"`);
  }
  return value;
}

export const OFFICIAL_IMAGES: Record<Service, string> = {
  redis: "redis:7",
  postgres: "postgres:15",
  // MinIO enforces If-None-Match: * and If-Match on PutObject (conditional writes).
  s3: "minio/minio:RELEASE.2025-04-22T22-12-26Z",
};
export const LOCAL_IMAGES: Record<Service, string> = {
  redis: "taskstore-test/redis:local",
  postgres: "taskstore-test/postgres:local",
  s3: "taskstore-test/radosgw:local",
};

export function imageFor(service: Service): string {
  const override = process.env[`TASKSTORE_${service.toUpperCase()}_IMAGE`];
  if (override) return override;
  return (imageSet() === "local" ? LOCAL_IMAGES : OFFICIAL_IMAGES)[service];
}

/**
 * `host`: the container shares the host's network (the server listens on the host's loopback on
 * the port this process chose); `mapped`: the container has its own network and each port is
 * published on the same number of the host. Follows the image set; `TASKSTORE_TEST_NETWORK`
 * overrides it.
 */
export function networking(): "host" | "mapped" {
  const value = process.env.TASKSTORE_TEST_NETWORK;
  if (value === "host" || value === "mapped") return value;
  return imageSet() === "local" ? "host" : "mapped";
}

/** The address a server in a container listens on: loopback with host networking, all interfaces of its own network otherwise. */
export function listenAddress(): string {
  return networking() === "host" ? "127.0.0.1" : "0.0.0.0";
}

/** Where a server came from, for the tests that check it is the container it claims to be. */
export interface ContainerInfo {
  /** The container's full id. */
  readonly id: string;
  /** The image it was created from, as named (e.g. `taskstore-test/redis:local`). */
  readonly image: string;
}

export interface ContainerSpec {
  service: Service;
  image: string;
  command?: string[];
  environment?: Record<string, string>;
  /** Ports the server listens on inside the container; with port mapping each is published on the same host port. */
  ports: number[];
  /** Readiness at the first start, built from testcontainers' `Wait` (loaded lazily). */
  wait: (wait: typeof import("testcontainers").Wait) => WaitStrategy;
  /**
   * Readiness after `restart()`: true once the server serves. Asked of the server itself, not of
   * its log, which still holds the ready line of the run before.
   */
  ready: (server: ContainerServer) => Promise<boolean>;
  /** The signal `docker stop` and `docker restart` send first (PostgreSQL: SIGINT, its fast shutdown). */
  stopSignal?: NodeJS.Signals;
  /** Joins this container's network namespace instead (a Redis Cluster's nodes under port mapping). */
  joinNetworkOf?: string;
  startupTimeoutMs?: number;
  /** How long `stop()` waits after the stop signal before SIGKILL. Default 10 s. */
  stopTimeoutMs?: number;
}

export interface ContainerServer extends ContainerInfo {
  readonly container: StartedTestContainer;
  /** The host the published ports are on: 127.0.0.1 here. */
  readonly host: string;
  exec(command: string[], options?: { user?: string }): Promise<{ exitCode: number; output: string }>;
  /** Stops the container (its stop signal, then SIGKILL) and removes it with its data. */
  stop(): Promise<void>;
  /** Sends `signal` (default SIGKILL) to the container's main process and waits until the container has stopped. Keeps its file system. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the container again (stopping it first if it runs) on the same file system and ports; waits until it is ready. */
  restart(): Promise<void>;
}

/** Containers this process started and has not removed: removed when the process exits. */
const containers = new Map<string, ChildProcess | undefined>();
let hookInstalled = false;

function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  // Ryuk (testcontainers' reaper) is disabled on these machines, so clean up ourselves. An exit
  // hook must be synchronous: the docker CLI, when it is there, does it.
  process.on("exit", () => {
    const ids = [...containers.keys()];
    if (ids.length > 0) spawnSync("docker", ["rm", "-f", ...ids], { stdio: "ignore", timeout: 20_000 });
  });
}

/**
 * A watchdog like the local servers' (processes.ts): a tiny shell holding a pipe from this
 * process, which removes the container when the pipe closes, so a test process that dies
 * without running its exit hook (SIGKILL, OOM) leaves no container behind.
 */
function watch(id: string): ChildProcess | undefined {
  const watchdog = spawn("/bin/sh", ["-c", `read _ ; docker rm -f ${id} >/dev/null 2>&1`], {
    stdio: ["pipe", "ignore", "ignore"],
    detached: true,
  });
  watchdog.on("error", () => undefined);
  watchdog.unref();
  const pipe = watchdog.stdin as (NodeJS.WritableStream & { unref?: () => void }) | null;
  pipe?.on("error", () => undefined);
  pipe?.unref?.();
  return watchdog;
}

function forget(id: string): void {
  containers.get(id)?.kill("SIGKILL");
  containers.delete(id);
}

/**
 * Appends one line per container started to `TASKSTORE_CONTAINER_LEDGER` when it is set (the
 * container pass reads it for its summary): service, id, image, and the test file that asked.
 */
function record(service: Service, id: string, image: string): void {
  const ledger = process.env.TASKSTORE_CONTAINER_LEDGER;
  if (!ledger) return;
  const worker = (globalThis as { __vitest_worker__?: { filepath?: string } }).__vitest_worker__;
  const line = JSON.stringify({ service, id, image, file: worker?.filepath ?? process.argv[1] ?? "", at: new Date().toISOString() });
  appendFileSync(ledger, `${line}\n`);
}

/** The `GenericContainer` with the one option its builder lacks: the stop signal. */
async function containerClass(): Promise<new (image: string) => GenericContainer & { withStopSignal(signal: string): unknown }> {
  const { GenericContainer } = await import("testcontainers");
  return class extends GenericContainer {
    withStopSignal(signal: string): this {
      this.createOpts.StopSignal = signal;
      return this;
    }
  };
}

/** Starts a server container (see `ContainerSpec`); the caller chose its ports. */
export async function startContainer(spec: ContainerSpec): Promise<ContainerServer> {
  process.env.TESTCONTAINERS_RYUK_DISABLED ??= "true";
  if (networking() === "host") process.env.TESTCONTAINERS_HOST_OVERRIDE ??= "127.0.0.1";
  installExitHook();
  const { Wait, getContainerRuntimeClient } = await import("testcontainers");
  const Container = await containerClass();
  // The builder's methods set options on it (and return it): no chaining needed.
  const builder = new Container(spec.image);
  builder.withWaitStrategy(spec.wait(Wait));
  builder.withStartupTimeout(spec.startupTimeoutMs ?? 60_000);
  builder.withLabels({ "org.taskstore.service": spec.service });
  if (spec.stopSignal) builder.withStopSignal(spec.stopSignal);
  if (spec.command) builder.withCommand(spec.command);
  if (spec.environment) builder.withEnvironment(spec.environment);
  if (spec.joinNetworkOf) builder.withNetworkMode(`container:${spec.joinNetworkOf}`);
  else if (networking() === "host") builder.withNetworkMode("host");
  else builder.withExposedPorts(...spec.ports.map((port) => ({ container: port, host: port })));
  const container = await builder.start();
  const id = container.getId();
  containers.set(id, watch(id));
  record(spec.service, id, spec.image);
  // Published ports are on every interface of the engine's host: that is this machine unless
  // DOCKER_HOST names another one.
  const host = process.env.DOCKER_HOST?.startsWith("tcp://") ? container.getHost() : "127.0.0.1";
  const handle = async () => (await getContainerRuntimeClient()).container.getById(id);
  const running = async () => (await (await handle()).inspect()).State.Running;
  const server: ContainerServer = {
    id,
    image: spec.image,
    container,
    host,
    exec: async (command, options) => {
      const result = await container.exec(command, options?.user ? { user: options.user } : undefined);
      return { exitCode: result.exitCode, output: result.output };
    },
    stop: async () => {
      try {
        await container.stop({ timeout: spec.stopTimeoutMs ?? 10_000 });
      } finally {
        forget(id);
      }
    },
    kill: async (signal = "SIGKILL") => {
      const docker = await handle();
      if (!(await running())) return;
      await docker.kill({ signal }).catch((error: Error) => {
        // A container that stopped meanwhile is killed already.
        if (!/is not running/.test(error.message)) throw error;
      });
      const deadline = Date.now() + 30_000;
      while (await running()) {
        if (Date.now() > deadline) throw new Error(`test-services: container ${id.slice(0, 12)} still runs 30 s after ${signal}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    restart: async () => {
      const docker = await handle();
      // Stops it first if it runs (its stop signal, then SIGKILL), then starts it.
      await docker.restart({ t: Math.ceil((spec.stopTimeoutMs ?? 10_000) / 1_000) });
      const timeoutMs = spec.startupTimeoutMs ?? 60_000;
      const deadline = Date.now() + timeoutMs;
      while (!(await spec.ready(server).catch(() => false))) {
        if (Date.now() > deadline)
          throw new Error(`test-services: container ${id.slice(0, 12)} not ready ${timeoutMs} ms after its restart`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
  };
  return server;
}

/**
 * Sends `request` over a fresh TCP connection and resolves with what came back before the
 * server closed or `timeoutMs` passed ("" when nothing did or the connection failed).
 */
export function tcpExchange(host: string, port: number, request: string, until: RegExp, timeoutMs = 1_000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    let reply = "";
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(reply);
    };
    const timer = setTimeout(done, timeoutMs);
    socket.on("connect", () => socket.write(request));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      if (until.test(reply)) done();
    });
    socket.on("error", done);
    socket.on("close", done);
  });
}
