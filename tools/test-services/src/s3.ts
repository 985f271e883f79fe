import { randomUUID } from "node:crypto";
import { request } from "node:http";
import { type ContainerInfo, type ContainerServer, imageFor, listenAddress, networking, startContainer } from "./container.js";
import { useDocker } from "./docker.js";
import { ServiceUnavailableError } from "./errors.js";
import { freePort } from "./processes.js";
import { RADOSGW_APT_PACKAGES, S3_INSTALL, startLocalRadosgw } from "./s3-radosgw.js";
import { signedRequest } from "./s3-sigv4.js";

export { RADOSGW_APT_PACKAGES };

export interface S3Server {
  /** `http://127.0.0.1:<port>` (path-style addressing). */
  readonly endpoint: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Where the server came from: the environment, a container (radosgw or MinIO), or a local radosgw. */
  readonly source: "env" | "docker" | "local";
  /** The container it runs in, when `source` is "docker". */
  readonly container?: ContainerInfo;
  /** What the server is, for messages: "radosgw", "minio" or "env". */
  readonly kind: "radosgw" | "minio" | "env";
  /** Creates a bucket with a fresh unique name (or `name`) and returns its name. */
  createBucket(name?: string): Promise<string>;
  /** Stops the server and deletes its data. For a server from the environment: nothing. */
  stop(): Promise<void>;
}

/**
 * An S3 server for this test file: `TASKSTORE_S3_ENDPOINT` (with `TASKSTORE_S3_ACCESS_KEY_ID`,
 * `TASKSTORE_S3_SECRET_ACCESS_KEY`, `TASKSTORE_S3_REGION`, else the usual `AWS_*` variables) when
 * set; else a container when a Docker engine answers (`imageFor("s3")`: taskstore-test/radosgw,
 * the same single-node Ceph cluster as below, or MinIO when the image's name says so); else a throwaway Ceph radosgw
 * spawned from the local packages (about 20 s: start one per test file, in `beforeAll`). Throws
 * `ServiceUnavailableError`, naming the apt packages, when none can be had.
 */
export async function startS3(): Promise<S3Server> {
  const region = process.env.TASKSTORE_S3_REGION ?? process.env.AWS_REGION ?? "us-east-1";
  const endpoint = process.env.TASKSTORE_S3_ENDPOINT;
  if (endpoint) {
    const accessKeyId = process.env.TASKSTORE_S3_ACCESS_KEY_ID ?? process.env.AWS_ACCESS_KEY_ID;
    const secretAccessKey = process.env.TASKSTORE_S3_SECRET_ACCESS_KEY ?? process.env.AWS_SECRET_ACCESS_KEY;
    if (!accessKeyId || !secretAccessKey) {
      throw new ServiceUnavailableError(
        "S3",
        "TASKSTORE_S3_ENDPOINT is set but no credentials are: set TASKSTORE_S3_ACCESS_KEY_ID and TASKSTORE_S3_SECRET_ACCESS_KEY.",
      );
    }
    return server({ endpoint, region, accessKeyId, secretAccessKey }, "env", "env", async () => undefined);
  }
  if (await useDocker("S3", S3_INSTALL)) return startS3Container(region);
  // A cluster start that failed for a reason other than missing binaries is tried once more on
  // fresh ports and a fresh folder: CI machines are busy, and a second start costs ~15 s.
  let local: Awaited<ReturnType<typeof startLocalRadosgw>>;
  try {
    local = await startLocalRadosgw();
  } catch (error) {
    if (error instanceof ServiceUnavailableError) throw error;
    local = await startLocalRadosgw();
  }
  return server({ ...local, region }, "local", "radosgw", local.stop);
}

function server(
  creds: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string },
  source: S3Server["source"],
  kind: S3Server["kind"],
  stop: () => Promise<void>,
  container?: ContainerInfo,
): S3Server {
  return {
    ...creds,
    source,
    kind,
    ...(container ? { container } : {}),
    stop,
    async createBucket(name = `taskstore-${randomUUID().slice(0, 18)}`) {
      const response = await signedRequest(creds, "PUT", `/${name}`);
      if (response.status !== 200)
        throw new Error(`test-services: creating bucket ${name} failed with HTTP ${response.status}: ${response.body}`);
      return name;
    },
  };
}

/**
 * An S3 server in a container: MinIO when the image's name contains "minio", else an image with
 * taskstore-test/radosgw's entrypoint (images/radosgw-entrypoint.sh: MON_PORT, RGW_PORT,
 * RGW_BIND, ACCESS_KEY, SECRET_KEY). Ready once it answers HTTP on the published port.
 */
async function startS3Container(region: string): Promise<S3Server> {
  const image = imageFor("s3");
  const minio = /minio/i.test(image);
  const port = await freePort();
  const accessKeyId = `TS${randomUUID().replaceAll("-", "").slice(0, 18).toUpperCase()}`;
  // MinIO takes secret keys of 8 to 40 characters.
  const secretAccessKey = minio ? randomUUID().replaceAll("-", "") : randomUUID() + randomUUID();
  let started: ContainerServer | undefined;
  try {
    if (minio) {
      const consolePort = await freePort();
      started = await startContainer({
        service: "s3",
        image,
        command: ["server", "/data", "--address", `${listenAddress()}:${port}`, "--console-address", `${listenAddress()}:${consolePort}`],
        environment: { MINIO_ROOT_USER: accessKeyId, MINIO_ROOT_PASSWORD: secretAccessKey },
        ports: [port],
        wait: (Wait) => Wait.forLogMessage(/API:/),
        ready: async (self) => (await httpStatus(`http://${self.host}:${port}/minio/health/live`)) === 200,
        startupTimeoutMs: 60_000,
      });
    } else {
      // The monitor's port is the host's too under host networking: chosen free here.
      const monPort = networking() === "host" ? await freePort() : 6789;
      started = await startContainer({
        service: "s3",
        image,
        environment: {
          MON_PORT: String(monPort),
          RGW_PORT: String(port),
          RGW_BIND: listenAddress(),
          ACCESS_KEY: accessKeyId,
          SECRET_KEY: secretAccessKey,
        },
        ports: [port],
        wait: (Wait) => Wait.forLogMessage(/taskstore-test\/radosgw: user created/),
        // A restart makes a new cluster (the entrypoint's), with the same user and keys.
        ready: async (self) => (await httpStatus(`http://${self.host}:${port}/`)) === 200,
        startupTimeoutMs: 120_000,
        // Nothing to keep: its data is in memory (memstore) and goes with the container.
        stopSignal: "SIGKILL",
      });
    }
    const endpoint = `http://${started.host}:${port}`;
    await waitForHttp(`${endpoint}${minio ? "/minio/health/live" : "/"}`, 90_000);
    const running = started;
    return server({ endpoint, region, accessKeyId, secretAccessKey }, "docker", minio ? "minio" : "radosgw", () => running.stop(), {
      id: running.id,
      image: running.image,
    });
  } catch (error) {
    const logs = started ? await containerLogs(started) : "";
    await started?.stop().catch(() => undefined);
    throw new ServiceUnavailableError(
      "S3",
      `Docker answered but the ${image} container did not start (${(error as Error).message}${logs ? `; its last output:\n${logs}` : ""}). ${S3_INSTALL}`,
      { cause: error },
    );
  }
}

async function containerLogs(server: ContainerServer): Promise<string> {
  try {
    const stream = await server.container.logs({ tail: 40 });
    let text = "";
    stream.on("data", (chunk: Buffer | string) => {
      text += chunk.toString();
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    stream.destroy?.();
    return text;
  } catch {
    return "";
  }
}

/** The HTTP status `url` answers with, 0 when it does not answer within 2 s. */
function httpStatus(url: string): Promise<number> {
  return new Promise<number>((resolve) => {
    const req = request(url, { timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", () => resolve(0));
    req.end();
  });
}

/** Resolves once `url` answers 200 (the gateway serves), polling for at most `timeoutMs`. */
async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await httpStatus(url);
    if (status === 200) return;
    if (Date.now() > deadline)
      throw new Error(`test-services: ${url} did not answer 200 within ${timeoutMs} ms (last: ${status || "no answer"})`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
