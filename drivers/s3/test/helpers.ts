import { randomUUID } from "node:crypto";
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import type { ConformanceStore } from "@taskstore/conformance";
import { S3StorageDriver, type S3StorageDriverOptions } from "@taskstore/driver-s3";
import type { S3Server } from "@taskstore/test-services";

export function uniquePrefix(name = "test"): string {
  return `${name}-${randomUUID().slice(0, 8)}/`;
}

/** Driver options for a store on `server` in `bucket` under `prefix`. */
export function driverOptions(server: S3Server, bucket: string, prefix: string): S3StorageDriverOptions {
  return {
    bucket,
    prefix,
    endpoint: server.endpoint,
    region: server.region,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  };
}

/** A plain S3 client on the server, for looking at objects from outside the driver. */
export function rawClient(server: S3Server, endpoint = server.endpoint): S3Client {
  return new S3Client({
    endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

/** Every key under `prefix`, following ListObjectsV2 continuation tokens. */
export async function listKeys(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const item of page.Contents ?? []) if (item.Key) keys.push(item.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

export async function deletePrefix(client: S3Client, bucket: string, prefix: string): Promise<void> {
  const keys = await listKeys(client, bucket, prefix);
  for (let i = 0; i < keys.length; i += 16) {
    await Promise.all(keys.slice(i, i + 16).map((Key) => client.send(new DeleteObjectCommand({ Bucket: bucket, Key }))));
  }
}

/** `setup()` for the conformance suite: a fresh prefix per test in the file's bucket, deleted afterwards. */
export function conformanceSetup(
  server: () => S3Server,
  bucket: () => string,
  options: Partial<S3StorageDriverOptions> = {},
): () => Promise<ConformanceStore> {
  return async () => {
    const prefix = uniquePrefix("conformance");
    const opened = () => ({ ...driverOptions(server(), bucket(), prefix), lockTimeoutMs: 5_000, ...options });
    return {
      open: async () => new S3StorageDriver(opened()),
      child: { module: import.meta.resolve("@taskstore/driver-s3"), export: "S3StorageDriver", args: [opened()] },
      readRaw: async () => {
        const client = rawClient(server());
        try {
          return await objectBodies(client, bucket(), prefix);
        } finally {
          client.destroy();
        }
      },
      teardown: async () => {
        const client = rawClient(server());
        try {
          await deletePrefix(client, bucket(), prefix);
        } finally {
          client.destroy();
        }
      },
    };
  };
}

/** Every object's body under a prefix, one after the other (for the suite's no-plaintext check). */
export async function objectBodies(client: S3Client, bucket: string, prefix: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const key of await listKeys(client, bucket, prefix)) {
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    parts.push(Buffer.from((await object.Body?.transformToByteArray()) ?? []));
  }
  return Buffer.concat(parts);
}
