import { randomUUID } from "node:crypto";
import { UnsupportedError } from "@taskstore/core";
import { errors } from "./s3-errors.js";
import type { EtagQuoting, S3Io } from "./s3-io.js";

/**
 * UNSUPPORTED, not STORAGE_UNAVAILABLE: the endpoint is the wrong kind of server, which retrying
 * cannot fix, so initialize() fails at once instead of being retried as an outage.
 */
export class UnsafeEndpointError extends UnsupportedError {}

/**
 * Proves that the endpoint enforces the two conditions every write of this driver relies on, on a
 * throwaway object under `<prefix>probe/`: a second `If-None-Match: *` create must get 412, a
 * replace with a stale `If-Match` must get 412. An S3 fake that ignores them (s3rver and its
 * forks) would let two writers both "win" and lose data silently, so it is refused.
 *
 * With `quoting: "auto"` it also finds how `If-Match` must spell the current ETag: quoted, as
 * RFC 7232 and AWS say, or bare, which is all Ceph RGW 16 matches. Resolves with the form to use.
 */
export async function probeConditionalWrites(io: S3Io, quoting: EtagQuoting | "auto"): Promise<EtagQuoting> {
  const key = `probe/${randomUUID()}.json`;
  const where = `s3://${io.bucket}/${io.prefix}${key}`;
  const refuse = (what: string) =>
    new UnsafeEndpointError(
      errors.message(
        `the endpoint ignores ${what} (probe ${where}); with it two writers could both "win" and acknowledged writes would be lost, so this driver refuses it. Use a server that enforces conditional writes (AWS S3, MinIO, Ceph RGW), or set unsafeAllowUnconditionalWrites: true if only one process ever writes this store.`,
      ),
    );
  // A 412 on a write of ours may be the SDK's retry of that very write, whose first reply was lost
  // (a dropped connection): then the object holds what we wrote, and the write counts as done.
  const landed = async (body: string): Promise<string | undefined> => {
    const found = await io.get(key);
    return found?.body === body ? found.etag : undefined;
  };
  try {
    // The key is new (a random uuid): nobody but this probe creates it.
    const first = (await io.putIfAbsent(key, '{"probe":1}')) ?? (await landed('{"probe":1}'));
    if (first === undefined) throw errors.unavailable(`the probe object ${where} already existed`);
    if ((await io.putIfAbsent(key, '{"probe":2}')) !== undefined) throw refuse("If-None-Match: * (a second create of one key succeeded)");

    const candidates: EtagQuoting[] = quoting === "auto" ? ["standard", "unquoted"] : [quoting];
    let current = first;
    let chosen: EtagQuoting | undefined;
    let stale: string | undefined;
    for (const form of candidates) {
      io.etagQuoting = form;
      const next = (await io.putIfMatch(key, '{"probe":3}', current)) ?? (await landed('{"probe":3}'));
      if (next !== undefined) {
        chosen = form;
        stale = current;
        current = next;
        break;
      }
    }
    if (!chosen || stale === undefined) {
      throw new UnsafeEndpointError(
        errors.message(
          `the endpoint refused If-Match with the object's own ETag (${candidates.join(" and ")} form tried, probe ${where}); set etagQuoting to the form it accepts`,
        ),
      );
    }
    if (stale === current) throw refuse("If-Match (it returned the same ETag for different content)");
    if ((await io.putIfMatch(key, '{"probe":4}', stale)) !== undefined) throw refuse("If-Match (a replace with a stale ETag succeeded)");
    return chosen;
  } finally {
    await io.delete(key).catch(() => undefined);
  }
}
