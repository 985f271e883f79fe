import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServiceUnavailableError, startRedis, startRedisCluster } from "@taskstore/test-services";
import { describe, expect, it } from "vitest";

/** Sends one inline command over a fresh TCP connection and returns the raw reply. */
function send(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let reply = "";
    socket.on("connect", () => socket.write(`${command}\r\n`));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      if (reply.endsWith("\r\n")) {
        socket.end();
        resolve(reply);
      }
    });
    socket.on("error", reject);
    // Closed with no whole reply: what a port-mapping proxy does when its container is gone.
    socket.on("close", () => reject(new Error(`connection to ${port} closed before a reply: ${JSON.stringify(reply)}`)));
  });
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const refused = (port: number) =>
  send(port, "PING").then(
    () => false,
    () => true,
  );

describe("startRedis", () => {
  it("starts a server of its own that answers, and stop() ends it", async () => {
    const server = await startRedis({ dedicated: true });
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
    expect(await send(server.port, "PING")).toBe("+PONG\r\n");
    await server.stop();
    expect(await refused(server.port)).toBe(true);
  });

  it("kill() then restart() brings the same port back with the data of an appendonly server", async () => {
    const server = await startRedis({ dedicated: true, appendonly: true });
    try {
      expect(await send(server.port, "SET k survived")).toBe("+OK\r\n");
      await server.kill();
      expect(await refused(server.port)).toBe(true);
      await server.restart();
      expect(await send(server.port, "GET k")).toBe("$8\r\nsurvived\r\n");
    } finally {
      await server.stop();
    }
  });

  it("uses TASKSTORE_REDIS_URL when set, unless a dedicated server is asked for", async () => {
    const own = await startRedis({ dedicated: true });
    const saved = process.env.TASKSTORE_REDIS_URL;
    process.env.TASKSTORE_REDIS_URL = own.url;
    try {
      const fromEnv = await startRedis();
      expect(fromEnv).toMatchObject({ source: "env", url: own.url, port: own.port });
      await expect(fromEnv.kill()).rejects.toThrow(/dedicated/);
      const dedicated = await startRedis({ dedicated: true });
      expect(dedicated.port).not.toBe(own.port);
      await dedicated.stop();
    } finally {
      if (saved === undefined) delete process.env.TASKSTORE_REDIS_URL;
      else process.env.TASKSTORE_REDIS_URL = saved;
      await own.stop();
    }
  });

  it("without redis-server, Docker or a URL, fails with a message saying what to install", async () => {
    const empty = await mkdtemp(join(tmpdir(), "no-redis-"));
    const saved = { PATH: process.env.PATH, DOCKER_HOST: process.env.DOCKER_HOST };
    process.env.PATH = empty;
    process.env.DOCKER_HOST = `unix://${join(empty, "docker.sock")}`;
    try {
      const failure = await startRedis({ dedicated: true }).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(ServiceUnavailableError);
      expect((failure as Error).message).toMatch(/apt-get install -y redis-server/);
    } finally {
      process.env.PATH = saved.PATH;
      if (saved.DOCKER_HOST === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved.DOCKER_HOST;
      await rm(empty, { recursive: true, force: true });
    }
  });

  it("a server does not outlive a test process that is SIGKILLed", async () => {
    const child = spawn(process.execPath, [join(import.meta.dirname, "fixtures/start-and-hang.mjs")], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.once("data", (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
      child.once("exit", (code) => reject(new Error(`the fixture exited early (${code})`)));
    });
    expect(await send(port, "PING")).toBe("+PONG\r\n");
    child.kill("SIGKILL");
    await eventually(() => refused(port));
  });
});

describe("startRedisCluster", () => {
  it("joins three masters that together serve every slot", async () => {
    const cluster = await startRedisCluster({ masters: 3 });
    try {
      expect(cluster.nodes).toHaveLength(3);
      for (const node of cluster.nodes) {
        const info = await send(node.port, "CLUSTER INFO");
        expect(info).toContain("cluster_state:ok");
        expect(info).toContain("cluster_slots_assigned:16384");
        expect(info).toContain("cluster_known_nodes:3");
      }
    } finally {
      await cluster.stop();
    }
    for (const node of cluster.nodes) expect(await refused(node.port)).toBe(true);
  });
});
