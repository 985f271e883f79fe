import { randomUUID } from "node:crypto";
import { dockerReachable } from "./docker.js";
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
  /** Where the server came from: the environment, a container (MinIO), or a local radosgw. */
  readonly source: "env" | "docker" | "local";
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
 * set; else MinIO in a container when a Docker engine answers; else a throwaway Ceph radosgw
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
  if (await dockerReachable()) return startMinioContainer(region);
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
): S3Server {
  return {
    ...creds,
    source,
    kind,
    stop,
    async createBucket(name = `taskstore-${randomUUID().slice(0, 18)}`) {
      const response = await signedRequest(creds, "PUT", `/${name}`);
      if (response.status !== 200)
        throw new Error(`test-services: creating bucket ${name} failed with HTTP ${response.status}: ${response.body}`);
      return name;
    },
  };
}

async function startMinioContainer(region: string): Promise<S3Server> {
  const port = await freePort();
  const image = process.env.TASKSTORE_S3_IMAGE ?? "minio/minio:latest";
  try {
    const { startContainer } = await import("./container.js");
    const container = await startContainer(image, ["server", "/data", "--address", `127.0.0.1:${port}`], /API:/);
    // MinIO's default root credentials, since the container gets no environment.
    return server(
      { endpoint: `http://127.0.0.1:${port}`, region, accessKeyId: "minioadmin", secretAccessKey: "minioadmin" },
      "docker",
      "minio",
      () => container.stop(),
    );
  } catch (error) {
    throw new ServiceUnavailableError(
      "S3",
      `Docker answered but the ${image} container did not start (${(error as Error).message}). ${S3_INSTALL}`,
      {
        cause: error,
      },
    );
  }
}
