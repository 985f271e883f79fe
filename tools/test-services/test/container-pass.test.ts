import { execFile } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import {
  type ContainerInfo,
  dockerReachable,
  imageFor,
  imageSet,
  networking,
  startPostgres,
  startRedis,
  startRedisCluster,
  startS3,
} from "@taskstore/test-services";
import { beforeAll, describe, expect, it, type TestContext } from "vitest";

// The proof that the container pass (scripts/test-containers.sh) ran its servers in containers
// and did not fall back to local binaries: for each service, the server answering on the port
// is the process of the container test-services reports, created from the expected image, and
// the faults the driver tests inject (kill, restart) act on that container. Runs only when the
// pass sets TASKSTORE_CONTAINER_PASS=1; then a missing engine FAILS it (it never skips).

const enabled = process.env.TASKSTORE_CONTAINER_PASS === "1";

function onlyInThePass(ctx: TestContext): void {
  if (!enabled) ctx.skip("only in the container pass: scripts/test-containers.sh sets TASKSTORE_CONTAINER_PASS=1");
}

interface Inspected {
  Id: string;
  Image: string;
  Config: { Image: string; Labels: Record<string, string> };
  State: { Running: boolean; Pid: number; ExitCode: number; StartedAt: string };
  HostConfig: { NetworkMode: string };
  NetworkSettings: { Ports: Record<string, { HostPort: string }[] | null> };
}
interface ImageInspected {
  Id: string;
  RepoTags: string[];
  RepoDigests: string[];
  Config: { Labels: Record<string, string> | null };
  RootFS: { Layers: string[] };
}

async function docker() {
  const { getContainerRuntimeClient } = await import("testcontainers");
  return (await getContainerRuntimeClient()).container.dockerode;
}

async function inspect(id: string): Promise<Inspected> {
  return (await (await docker()).getContainer(id).inspect()) as unknown as Inspected;
}

async function inspectImage(ref: string): Promise<ImageInspected> {
  return (await (await docker()).getImage(ref).inspect()) as unknown as ImageInspected;
}

/** Host PIDs of every process in the container (`docker top`). */
async function containerPids(id: string): Promise<number[]> {
  const top = (await (await docker()).getContainer(id).top({ ps_args: "-eo pid" })) as { Titles: string[]; Processes: string[][] };
  const column = top.Titles.findIndex((title) => title.trim() === "PID");
  return top.Processes.map((row) => Number(row[column]));
}

/** Host PIDs of the processes holding a TCP socket that listens on `port` (this network namespace). */
function listeners(port: number): number[] {
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      const local = fields[1] as string;
      const state = fields[3];
      if (state === "0A" && Number.parseInt(local.split(":")[1] as string, 16) === port) inodes.add(fields[9] as string);
    }
  }
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const target = readlinkSync(`/proc/${entry}/fd/${fd}`);
        const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
        if (inode && inodes.has(inode)) {
          pids.push(Number(entry));
          break;
        }
      } catch {
        // The process or fd went away meanwhile.
      }
    }
  }
  return pids;
}

function commandLine(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
}

/**
 * The checks every service gets: the container runs, was created from the image this pass asked
 * for (in `local`, the one build-images.sh made: its only layer is the tarball whose sha256 the
 * image's label records; in `official`, pulled from a registry), and the process serving `port`
 * lives in it (host networking: the listening socket's owner is one of the container's
 * processes, in its cgroup and its own mount namespace; port mapping: the port is published
 * by it and its processes run `program`).
 */
async function expectServedBy(container: ContainerInfo | undefined, service: "redis" | "postgres" | "s3", port: number, program: RegExp) {
  expect(container, "test-services reports the container it started").toBeDefined();
  const info = container as ContainerInfo;
  const state = await inspect(info.id);
  expect(state.Id).toBe(info.id);
  expect(state.State.Running).toBe(true);
  expect(state.Config.Image).toBe(imageFor(service));
  expect(info.image).toBe(imageFor(service));
  const image = await inspectImage(state.Image);
  if (imageSet() === "local") {
    expect(image.RepoTags).toContain(imageFor(service));
    expect(image.RepoDigests, "a local image was never pulled").toEqual([]);
    const labels = image.Config.Labels ?? {};
    expect(labels["org.taskstore.built-from"]).toBe("debian-host-packages");
    expect(image.RootFS.Layers).toEqual([`sha256:${labels["org.taskstore.rootfs-sha256"]}`]);
  } else {
    expect(image.RepoDigests.length, "an official image comes from a registry").toBeGreaterThan(0);
  }
  const pids = await containerPids(info.id);
  expect(pids).toContain(state.State.Pid);
  if (networking() === "host") {
    expect(state.HostConfig.NetworkMode).toBe("host");
    const owners = listeners(port);
    expect(owners.length, `a process listens on port ${port}`).toBeGreaterThan(0);
    for (const pid of owners) {
      expect(pids, `the listener on ${port} (pid ${pid}: ${commandLine(pid)}) is a process of container ${info.id.slice(0, 12)}`).toContain(
        pid,
      );
      expect(readFileSync(`/proc/${pid}/cgroup`, "utf8")).toContain(info.id);
      expect(readlinkSync(`/proc/${pid}/ns/mnt`), "the server has its own root file system").not.toBe(readlinkSync("/proc/self/ns/mnt"));
      expect(commandLine(pid)).toMatch(program);
    }
  } else {
    // A cluster's later nodes share the first node's network, which publishes their ports.
    const joined = /^container:(.+)$/.exec(state.HostConfig.NetworkMode)?.[1];
    const publisher = joined ? await inspect(joined) : state;
    expect(publisher.NetworkSettings.Ports[`${port}/tcp`]?.map((binding) => binding.HostPort)).toContain(String(port));
    expect(pids.map((pid) => commandLine(pid)).some((line) => program.test(line))).toBe(true);
  }
}

/** Sends one inline Redis command and returns the raw reply. */
function redis(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let reply = "";
    socket.on("connect", () => socket.write(`${command}\r\n`));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      const length = /^\$(\d+)\r\n/.exec(reply)?.[1];
      if (length === undefined ? reply.endsWith("\r\n") : Buffer.byteLength(reply) >= reply.indexOf("\n") + 1 + Number(length) + 2) {
        socket.end();
        resolve(reply);
      }
    });
    socket.on("error", reject);
    socket.on("close", () => reject(new Error(`connection to ${port} closed before a reply: ${JSON.stringify(reply)}`)));
  });
}

describe("the container pass", () => {
  beforeAll(async () => {
    if (!enabled) return;
    if (!(await dockerReachable())) {
      throw new Error(
        `TASKSTORE_CONTAINER_PASS=1 but no Docker engine answers on ${process.env.DOCKER_HOST ?? "the default socket"}${process.env.CI === "true" ? " (CI=true)" : ""}: the container pass must not run without one`,
      );
    }
  });

  it("has an engine, the one the pass started, and test-services refuses local binaries", async (ctx) => {
    onlyInThePass(ctx);
    expect(await dockerReachable()).toBe(true);
    expect(process.env.TASKSTORE_REQUIRE_CONTAINERS).toBe("1");
    if (imageSet() === "local") {
      // The private engine of scripts/test-containers.sh: its socket and data root in its folder.
      const folder = process.env.TASKSTORE_ENGINE_DIR as string;
      expect(folder).toBeTruthy();
      expect(process.env.DOCKER_HOST).toBe(`unix://${folder}/docker.sock`);
      const info = (await (await docker()).info()) as { DockerRootDir: string };
      expect(info.DockerRootDir).toBe(`${folder}/data`);
    }
    // Without an engine, a server is an error in this pass, not a local binary (redis-server is on PATH here).
    const script = fileURLToPath(new URL("./fixtures/start-and-hang.mjs", import.meta.url));
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [script],
        { env: { ...process.env, DOCKER_HOST: "unix:///nonexistent/docker.sock" }, timeout: 30_000 },
        (error, _stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stderr }),
      );
    });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(
      /ServiceUnavailableError: .*TASKSTORE_REQUIRE_CONTAINERS=1 \(the container pass\).*never falls back to local binaries/,
    );
  });

  it("startRedis(): redis-server in its container; kill() and restart() act on that container", async (ctx) => {
    onlyInThePass(ctx);
    const server = await startRedis({ dedicated: true, appendonly: true });
    try {
      expect(server.source).toBe("docker");
      await expectServedBy(server.container, "redis", server.port, /redis-server/);
      // In its own PID namespace the server is PID 1 (the container's main process).
      expect(await redis(server.port, "INFO server")).toMatch(/\r\nprocess_id:1\r\n/);
      const id = server.container?.id as string;
      const before = await inspect(id);
      expect(await redis(server.port, "SET k survived")).toBe("+OK\r\n");
      await server.kill();
      const killed = await inspect(id);
      expect(killed.State.Running).toBe(false);
      expect(killed.State.ExitCode).toBe(137); // SIGKILL
      await server.restart();
      const after = await inspect(id);
      expect(after.State.Running).toBe(true);
      expect(after.State.Pid).not.toBe(before.State.Pid);
      expect(after.State.StartedAt).not.toBe(before.State.StartedAt);
      await expectServedBy(server.container, "redis", server.port, /redis-server/);
      expect(await redis(server.port, "GET k")).toBe("$8\r\nsurvived\r\n");
    } finally {
      await server.stop();
    }
  });

  it("startRedisCluster(): every master in a container of its own", async (ctx) => {
    onlyInThePass(ctx);
    const cluster = await startRedisCluster({ masters: 3 });
    try {
      expect(cluster.source).toBe("docker");
      expect(cluster.containers).toHaveLength(3);
      expect(new Set(cluster.containers?.map((container) => container.id)).size).toBe(3);
      for (const [i, node] of cluster.nodes.entries()) {
        await expectServedBy(cluster.containers?.[i], "redis", node.port, /redis-server/);
        expect(await redis(node.port, "CLUSTER INFO")).toContain("cluster_state:ok");
      }
    } finally {
      await cluster.stop();
    }
  });

  it("startPostgres(): postgres in its container; kill() is an immediate shutdown of that container, restart() recovers it", async (ctx) => {
    onlyInThePass(ctx);
    const server = await startPostgres({ dedicated: true, fsync: true });
    // psql in the container, over TCP to the port the tests use (the container's network is the
    // host's, or shares the published port's namespace).
    const query = async (sql: string) => {
      const result = await exec(server.container?.id as string, [
        "psql",
        "-h",
        "127.0.0.1",
        "-p",
        String(server.port),
        "-U",
        "postgres",
        "-At",
        "-c",
        sql,
      ]);
      expect(result.exitCode, result.output).toBe(0);
      return result.output.trim();
    };
    try {
      expect(server.source).toBe("docker");
      await expectServedBy(server.container, "postgres", server.port, /postgres/);
      // The data folder is the container's, not a host temp folder.
      expect(await query("SHOW data_directory")).toBe("/var/lib/postgresql/data");
      await query("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('committed')");
      const id = server.container?.id as string;
      await server.kill();
      expect((await inspect(id)).State.Running).toBe(false);
      await server.restart();
      expect((await inspect(id)).State.Running).toBe(true);
      await expectServedBy(server.container, "postgres", server.port, /postgres/);
      expect(await query("SELECT v FROM kept")).toBe("committed");
      const logs = await containerLogs(id);
      expect(logs).toMatch(/received immediate shutdown request/);
      expect(logs).toMatch(/database system was interrupted|not properly shut down|automatic recovery in progress/);
    } finally {
      await server.stop();
    }
  });

  it("startS3(): the S3 server in its container", async (ctx) => {
    onlyInThePass(ctx);
    const server = await startS3();
    try {
      expect(server.source).toBe("docker");
      const port = Number(new URL(server.endpoint).port);
      await expectServedBy(server.container, "s3", port, imageSet() === "local" ? /radosgw/ : /minio/);
      expect(server.kind).toBe(/minio/i.test(imageFor("s3")) ? "minio" : "radosgw");
      expect(await server.createBucket()).toMatch(/^taskstore-/);
    } finally {
      await server.stop();
    }
  }, 180_000);
});

async function exec(id: string, command: string[]): Promise<{ exitCode: number; output: string }> {
  const { getContainerRuntimeClient } = await import("testcontainers");
  const client = await getContainerRuntimeClient();
  const result = await client.container.exec(client.container.getById(id), command);
  return { exitCode: result.exitCode, output: result.output };
}

async function containerLogs(id: string): Promise<string> {
  const buffer = (await (await docker()).getContainer(id).logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
  return buffer.toString("utf8");
}
