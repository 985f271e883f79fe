import { createCipheriv, createDecipheriv, createHash, createSecretKey, type KeyObject, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import zlib from "node:zlib";
import { TaskStoreError } from "./errors.js";
import type { LogEntry, TaskBody } from "./schema.js";

/*
 * Encryption at rest and compression, for every driver: core seals a task's text before the driver
 * sees it and opens it after, so a driver (ours or a third party's) stores only what it always
 * stores. A sealed task keeps in clear what stores index and core needs to order and link tasks:
 * id, status, parent, children, times, progress percent, the dropped-log count, and unknown fields
 * of a newer minor version. Its title, description, assignee, progress text and metadata move
 * into one sealed value (`sealed`, an extra field every driver keeps), and the title reads
 * "(sealed)". A log entry keeps its time and type; its output and source are sealed.
 *
 * A sealed value: `tse1.<key id or ->.<compression>.<iv>.<tag>.<data>` (base64url parts). AES-256-GCM
 * from node:crypto with a fresh 96-bit nonce per value; the key id (the first 16 hex digits of the
 * key's SHA-256) says which key opens it, so old keys still read after a rotation. Compression
 * (`br`, `gz`, `zs` where Node has zstd, `-` for none) runs before encryption, on values of at
 * least `thresholdBytes`.
 */

/** Options for sealing, given to `new TaskRepository({ sealing })`. */
export interface SealingOptions {
  /**
   * Encryption keys, newest first: 32 bytes each, raw or base64. The first one seals new writes;
   * every one opens what it sealed. Keys never appear in messages, metrics or `diagnose`.
   */
  keys?: (string | Uint8Array)[];
  /**
   * Whether new writes are encrypted with the first key (default true when keys are given).
   * `false` keeps the keys for reading only: with `reseal()`, that decrypts a store.
   */
  encrypt?: boolean;
  /** Compress values of at least `thresholdBytes` (default 1,024) before sealing. */
  compress?: boolean | { thresholdBytes?: number };
}

/** The field of a task or log entry that holds its sealed part. */
export const SEALED_FIELD = "sealed";
const PREFIX = "tse1";
const SEALED_TITLE = "(sealed)";

interface Key {
  id: string;
  key: KeyObject;
}

/** How many tasks' last sealed value and text a sealer keeps (see `Sealer.known`). */
const TASKS_KNOWN = 10_000;

/** A store holds sealed values this process cannot open (a missing or wrong key), or cannot seal. */
export class SealingError extends TaskStoreError {
  constructor(message: string) {
    super("ENCRYPTION", message);
  }
}

/** The keys from `TASKSTORE_KEY_FILE` (one base64 key per line, newest first) or `TASKSTORE_KEY`. */
export function keysFromEnvironment(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  if (env.TASKSTORE_KEY_FILE) {
    let text: string;
    try {
      text = readFileSync(env.TASKSTORE_KEY_FILE, "utf8");
    } catch (error) {
      throw new SealingError(`cannot read the key file named by TASKSTORE_KEY_FILE: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
    }
    const keys = text
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "" && !line.startsWith("#"));
    if (keys.length === 0) throw new SealingError("the key file named by TASKSTORE_KEY_FILE holds no key");
    return keys;
  }
  return env.TASKSTORE_KEY ? [env.TASKSTORE_KEY] : undefined;
}

function toKey(raw: string | Uint8Array, index: number): Key {
  const key = typeof raw === "string" ? Buffer.from(raw.trim(), "base64") : Buffer.from(raw);
  if (key.length !== 32)
    throw new SealingError(`encryption key ${index + 1} is ${key.length} bytes; AES-256 needs 32 (base64 of 32 bytes)`);
  // A KeyObject, made once: given as bytes, every cipher would import the key again.
  return { id: createHash("sha256").update(key).digest("hex").slice(0, 16), key: createSecretKey(key) };
}

/**
 * A fresh 96-bit nonce from the CSPRNG, taken from a block of them drawn at once: one
 * `randomBytes(12)` per value cost a sealed append on Redis about 8 us (a call into OpenSSL's
 * generator each time); a block of 1,024 costs that once. Each nonce is used once.
 */
function freshNonce(): Buffer {
  if (nonceOffset + NONCE_BYTES > nonces.length) {
    nonces = randomBytes(NONCE_BYTES * 1_024);
    nonceOffset = 0;
  }
  const nonce = Buffer.from(nonces.subarray(nonceOffset, nonceOffset + NONCE_BYTES));
  nonceOffset += NONCE_BYTES;
  return nonce;
}
const NONCE_BYTES = 12;
let nonces = Buffer.alloc(0);
let nonceOffset = 0;

const hasZstd = typeof (zlib as { zstdCompressSync?: unknown }).zstdCompressSync === "function";
type Zstd = { zstdCompressSync(b: Buffer): Buffer; zstdDecompressSync(b: Buffer): Buffer };

/** Seals and opens task text. */
export class Sealer {
  private readonly current: Key | undefined;
  private readonly keys = new Map<string, KeyObject>();
  private readonly threshold: number | undefined;
  /**
   * Task id -> the sealed value this sealer last made or opened for it, and its text (the
   * `TASKS_KNOWN` most recent, oldest first). A change set reads back the task it wrote the
   * change set before, and most writes leave a task's text as it was (an append rewrites the
   * body for `updatedAt`): each AES-GCM open or seal of it was about a fifth of an encrypted
   * append on Redis. A sealed value is authenticated, so a string seen before opens to the same
   * text. The process holds the same text in its tasks anyway.
   */
  private readonly known = new Map<string, { value: string; text: string; sealedHere: boolean }>();

  constructor(options: SealingOptions) {
    const keys = (options.keys ?? []).map(toKey);
    for (const key of keys) this.keys.set(key.id, key.key);
    this.current = options.encrypt === false ? undefined : keys[0];
    const compress = options.compress;
    this.threshold =
      compress === undefined || compress === false ? undefined : compress === true ? 1_024 : (compress.thresholdBytes ?? 1_024);
  }

  /** The id of the key new writes use (for `diagnose`; never the key). */
  get keyId(): string | undefined {
    return this.current?.id;
  }

  get compressing(): boolean {
    return this.threshold !== undefined;
  }

  /** A task body as the driver should store it. */
  sealTask<T extends TaskBody>(task: T): T {
    const secret: Record<string, unknown> = { title: task.title, metadata: task.metadata };
    if (task.description !== undefined) secret.description = task.description;
    if (task.assignedTo !== undefined) secret.assignedTo = task.assignedTo;
    const { percent, ...progressRest } = task.progress;
    if (Object.keys(progressRest).length > 0) secret.progress = progressRest;
    const text = JSON.stringify(secret);
    // Without encryption, only what is worth compressing changes form; the rest stays plain.
    if (!this.current && !this.worthCompressing(text)) return task;
    const sealed: Record<string, unknown> = {};
    for (const key of Object.keys(task)) {
      if (key === "title" || key === "description" || key === "assignedTo" || key === "metadata" || key === "progress") continue;
      sealed[key] = (task as Record<string, unknown>)[key];
    }
    sealed.title = SEALED_TITLE;
    sealed.progress = { percent };
    sealed.metadata = {};
    sealed[SEALED_FIELD] = this.sealOf(task.id, text);
    return sealed as T;
  }

  /**
   * The sealed value of a task's text: the one this sealer made for the same task and the same
   * text last time, else a new one. What the backend then shows is that this task's text did not
   * change in that write; it showed its length before. A value another process or key made (one
   * this sealer only opened) is never reused.
   */
  private sealOf(taskId: string, text: string): string {
    const prior = this.known.get(taskId);
    if (prior?.sealedHere && prior.text === text) return prior.value;
    const value = this.seal(text);
    this.remember(taskId, { value, text, sealedHere: true });
    return value;
  }

  /** A task's sealed text, opened from memory when `known` holds that very value. */
  private openTaskText(taskId: string, value: unknown, what: string): string {
    const prior = this.known.get(taskId);
    if (prior !== undefined && prior.value === value) return prior.text;
    const text = this.open(value, what);
    if (typeof value === "string") this.remember(taskId, { value, text, sealedHere: false });
    return text;
  }

  private remember(taskId: string, entry: { value: string; text: string; sealedHere: boolean }): void {
    this.known.delete(taskId);
    this.known.set(taskId, entry);
    if (this.known.size <= TASKS_KNOWN) return;
    for (const oldest of this.known.keys()) {
      this.known.delete(oldest);
      break;
    }
  }

  /** A task body as stored, opened (a body with nothing sealed is returned as it is). */
  openTask<T extends TaskBody>(task: T): T {
    const value = (task as Record<string, unknown>)[SEALED_FIELD];
    if (value === undefined) return task;
    const secret = JSON.parse(this.openTaskText(task.id, value, `task ${task.id}`)) as Record<string, unknown>;
    const opened: Record<string, unknown> = {};
    for (const key of Object.keys(task)) if (key !== SEALED_FIELD) opened[key] = (task as Record<string, unknown>)[key];
    opened.title = secret.title;
    opened.metadata = secret.metadata;
    if (secret.description !== undefined) opened.description = secret.description;
    if (secret.assignedTo !== undefined) opened.assignedTo = secret.assignedTo;
    opened.progress = { ...(task.progress as object), ...(secret.progress as object | undefined) };
    return opened as T;
  }

  sealEntry(entry: LogEntry): LogEntry {
    const secret = entry.source === undefined ? { output: entry.output } : { output: entry.output, source: entry.source };
    const text = JSON.stringify(secret);
    if (!this.current && !this.worthCompressing(text)) return entry;
    const sealed: Record<string, unknown> = {};
    for (const key of Object.keys(entry)) if (key !== "output" && key !== "source") sealed[key] = (entry as Record<string, unknown>)[key];
    sealed.output = "";
    sealed[SEALED_FIELD] = this.seal(text);
    return sealed as unknown as LogEntry;
  }

  openEntry(entry: LogEntry, taskId: string): LogEntry {
    const value = (entry as unknown as Record<string, unknown>)[SEALED_FIELD];
    if (value === undefined) return entry;
    const secret = JSON.parse(this.open(value, `a log entry of task ${taskId}`)) as { output: string; source?: string };
    const opened: Record<string, unknown> = {};
    for (const key of Object.keys(entry)) if (key !== SEALED_FIELD) opened[key] = (entry as unknown as Record<string, unknown>)[key];
    opened.output = secret.output;
    if (secret.source !== undefined) opened.source = secret.source;
    return opened as unknown as LogEntry;
  }

  /** Any text sealed as one value (an incremental backup's point file). */
  sealText(text: string): string {
    return this.seal(text);
  }

  /** A value from `sealText()` opened; `what` names it in errors (`ENCRYPTION`). */
  openText(value: string, what: string): string {
    return this.open(value, what);
  }

  private worthCompressing(text: string): boolean {
    return this.threshold !== undefined && text.length >= this.threshold;
  }

  private seal(text: string): string {
    let data: Buffer = Buffer.from(text, "utf8");
    let z = "-";
    if (this.threshold !== undefined && data.length >= this.threshold) {
      if (hasZstd) {
        data = (zlib as unknown as Zstd).zstdCompressSync(data);
        z = "zs";
      } else {
        data = zlib.brotliCompressSync(data, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 4 } });
        z = "br";
      }
    }
    if (!this.current) return [PREFIX, "-", z, "", "", data.toString("base64url")].join(".");
    const iv = freshNonce();
    const cipher = createCipheriv("aes-256-gcm", this.current.key, iv);
    const encrypted = cipher.update(data);
    cipher.final(); // GCM is a stream mode: final() adds no bytes, it makes the tag
    const value = [
      PREFIX,
      this.current.id,
      z,
      iv.toString("base64url"),
      cipher.getAuthTag().toString("base64url"),
      encrypted.toString("base64url"),
    ].join(".");
    return value;
  }

  private open(value: unknown, what: string): string {
    const parts = typeof value === "string" ? value.split(".") : [];
    if (parts.length !== 6 || parts[0] !== PREFIX) throw new SealingError(`${what} holds a sealed value this version cannot read`);
    const [, keyId, z, iv, tag, body] = parts as [string, string, string, string, string, string];
    let data: Buffer = Buffer.from(body, "base64url");
    if (keyId !== "-") {
      const key = this.keys.get(keyId);
      if (!key) {
        throw new SealingError(
          `${what} is encrypted with key ${keyId}, which ${this.keys.size === 0 ? "was not given (set TASKSTORE_KEY or TASKSTORE_KEY_FILE)" : "is not among the keys given"}; nothing was written`,
        );
      }
      try {
        const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(iv, "base64url"));
        decipher.setAuthTag(Buffer.from(tag, "base64url"));
        data = Buffer.concat([decipher.update(data), decipher.final()]);
      } catch {
        throw new SealingError(`${what} does not open with key ${keyId} (damaged or altered); nothing was written`);
      }
    }
    try {
      if (z === "br") data = zlib.brotliDecompressSync(data);
      else if (z === "gz") data = zlib.gunzipSync(data);
      else if (z === "zs") {
        if (!hasZstd) throw new SealingError(`${what} is compressed with zstd, which this Node version lacks (Node 22.15 or newer has it)`);
        data = (zlib as unknown as Zstd).zstdDecompressSync(data);
      } else if (z !== "-") throw new SealingError(`${what} uses compression "${z}", unknown to this version`);
    } catch (error) {
      if (error instanceof SealingError) throw error;
      throw new SealingError(`${what} does not decompress (damaged)`);
    }
    return data.toString("utf8");
  }
}

/** True when a stored task or any of its log entries is sealed. */
export function isSealed(task: { logs?: unknown[] } & Record<string, unknown>): boolean {
  if (task[SEALED_FIELD] !== undefined) return true;
  return Array.isArray(task.logs) && task.logs.some((entry) => (entry as Record<string, unknown> | null)?.[SEALED_FIELD] !== undefined);
}
