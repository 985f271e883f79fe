import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { statusOf, toDriverError } from "./s3-errors.js";

/** How `If-Match` carries an ETag: RFC 7232 quoted (AWS, MinIO) or bare (Ceph RGW 16 accepts only that). */
export type EtagQuoting = "standard" | "unquoted";

export interface StoredObject {
  body: string;
  etag: string;
}

export interface ListedObject {
  key: string;
  size: number;
  lastModified: number;
}

/**
 * The handful of S3 calls the driver makes, with the answers it branches on turned into values
 * (404 -> undefined, 412 -> false) and every other failure, after the SDK's own retries, into a
 * `StorageUnavailableError`. Keys are relative to the driver's prefix.
 */
export class S3Io {
  etagQuoting: EtagQuoting = "standard";

  constructor(
    readonly client: S3Client,
    readonly bucket: string,
    readonly prefix: string,
  ) {}

  async get(key: string): Promise<StoredObject | undefined> {
    return this.call("GET", key, async () => {
      try {
        const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
        const body = (await out.Body?.transformToString("utf8")) ?? "";
        return { body, etag: out.ETag ?? "" };
      } catch (error) {
        if (statusOf(error) === 404) return undefined;
        throw error;
      }
    });
  }

  /** Creates the object only if the key is free (`If-None-Match: *`). Returns its ETag, or undefined when the key exists. */
  putIfAbsent(key: string, body: string): Promise<string | undefined> {
    return this.put(key, body, { IfNoneMatch: "*" });
  }

  /** Replaces the object only if its ETag is still `etag` (`If-Match`). Returns the new ETag, or undefined on a mismatch. */
  putIfMatch(key: string, body: string, etag: string): Promise<string | undefined> {
    return this.put(key, body, { IfMatch: this.formatEtag(etag) });
  }

  /** An unconditional write: only for keys nobody else writes (unique names) or a store known to be unreadable. */
  putBlind(key: string, body: string): Promise<string | undefined> {
    return this.put(key, body, {});
  }

  async delete(key: string): Promise<void> {
    await this.call("DELETE", key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key })));
  }

  async copy(from: string, to: string): Promise<void> {
    const source = `${this.bucket}/${(this.prefix + from).split("/").map(encodeURIComponent).join("/")}`;
    await this.call("COPY", from, () =>
      this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: this.prefix + to, CopySource: source })),
    );
  }

  /** Every object under `under` (relative), page by page (ListObjectsV2 returns at most 1,000 keys a call). */
  async list(under: string): Promise<ListedObject[]> {
    const found: ListedObject[] = [];
    let token: string | undefined;
    do {
      const page = await this.call("LIST", under, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + under, ContinuationToken: token })),
      );
      for (const item of page.Contents ?? []) {
        if (!item.Key) continue;
        found.push({ key: item.Key.slice(this.prefix.length), size: item.Size ?? 0, lastModified: item.LastModified?.getTime() ?? 0 });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return found;
  }

  formatEtag(etag: string): string {
    const bare = etag.replace(/^W\//, "").replaceAll('"', "");
    return this.etagQuoting === "unquoted" ? bare : `"${bare}"`;
  }

  private async put(key: string, body: string, condition: { IfNoneMatch?: string; IfMatch?: string }): Promise<string | undefined> {
    return this.call("PUT", key, async () => {
      try {
        const out = await this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, Body: body, ContentType: "application/json", ...condition }),
        );
        return out.ETag ?? "";
      } catch (error) {
        // 412: the condition failed. 409 (ConditionalRequestConflict, AWS): a concurrent
        // conditional write to the key is in flight; the same answer, "someone else got there".
        // 404 on If-Match: the object is gone, so it did not match either.
        const status = statusOf(error);
        if (status === 412 || status === 409 || (status === 404 && condition.IfMatch)) return undefined;
        throw error;
      }
    });
  }

  private async call<T>(operation: string, key: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw toDriverError(error, `${operation} s3://${this.bucket}/${this.prefix}${key}`);
    }
  }
}
