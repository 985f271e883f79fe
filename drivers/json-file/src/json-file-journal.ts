import { constants, promises as fs, fstatSync, writeSync } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import { fileTypeOf } from "@taskstore/core";
import { codeOf, FILE_MODE, fsyncDir, tempPathFor } from "./json-file-atomic.js";

/** An open journal: the handle pins its inode, so a journal that replaced it can never share its number. */
export class JournalFile {
  private constructor(
    private handle: FileHandle,
    readonly dev: number,
    readonly ino: number,
    private writable: boolean,
    readonly file: string,
  ) {}

  /**
   * Opens the journal at `file` without following a symlink and without blocking on a FIFO.
   * Undefined when there is none; `{ notRegular }` when something else is there.
   */
  static async open(file: string): Promise<JournalFile | { notRegular: string } | undefined> {
    const flags = (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);
    let handle: FileHandle;
    let writable = true;
    try {
      handle = await fs.open(file, constants.O_RDWR | constants.O_APPEND | flags);
    } catch (error) {
      const code = codeOf(error);
      if (code === "ENOENT") return undefined;
      if (code === "ELOOP") return { notRegular: "a symlink" };
      if (code === "EISDIR") return { notRegular: "a folder" };
      if (!["EACCES", "EPERM", "EROFS"].includes(code ?? "")) throw error;
      // Readable but not writable (a read-only folder, another user's store): enough to read.
      try {
        handle = await fs.open(file, constants.O_RDONLY | flags);
      } catch (again) {
        if (codeOf(again) === "ENOENT") return undefined;
        throw again;
      }
      writable = false;
    }
    const stat = await handle.stat();
    if (!stat.isFile()) {
      await handle.close();
      return { notRegular: fileTypeOf(stat) };
    }
    return new JournalFile(handle, stat.dev, stat.ino, writable, file);
  }

  /**
   * Makes a new journal holding `header`: written and synced in `stage` (the lock's fence), then
   * linked at `file` (refused with EEXIST when a journal is there) or, with `replace`, renamed over
   * whatever journal is there. Both steps go through the fence, so they fail once the lock is lost.
   * A folder that cannot be synced afterwards is reported to `onUnsyncedFolder`, as for any file.
   */
  static async create(
    file: string,
    stage: string,
    header: Buffer,
    replace: boolean,
    onUnsyncedFolder: (error: Error) => void,
  ): Promise<JournalFile> {
    const temp = path.join(stage, path.basename(tempPathFor(file)));
    const handle = await fs.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
    let written: { dev: number; ino: number };
    try {
      await handle.chmod(FILE_MODE);
      await writeAll(handle, header);
      await handle.sync();
      written = await handle.stat();
    } finally {
      // Closed before its name goes (an open file unlinked on some file systems, FUSE, leaves a hidden file behind).
      await handle.close().catch(() => undefined);
    }
    try {
      if (replace) await fs.rename(temp, file);
      else await fs.link(temp, file);
    } catch (error) {
      await fs.rm(temp, { force: true }).catch(() => undefined);
      throw error;
    }
    if (!replace) await fs.unlink(temp).catch(() => undefined);
    try {
      await fsyncDir(path.dirname(file));
    } catch (error) {
      onUnsyncedFolder(error as Error);
    }
    const opened = await JournalFile.open(file);
    if (!(opened instanceof JournalFile) || opened.ino !== written.ino || opened.dev !== written.dev) {
      if (opened instanceof JournalFile) await opened.close();
      throw Object.assign(new Error(`${file} was replaced while it was being created`), { code: "EEXIST" });
    }
    return opened;
  }

  /**
   * The file's size now. `fstat` of an open file answers from the inode in memory and never
   * waits for the disk, so it is called directly: through the thread pool, as `handle.stat()`,
   * it cost an append about a fifth of its time (a round trip of ~20 us against ~1 us).
   */
  async size(): Promise<number> {
    return fstatSync(this.handle.fd).size;
  }

  /** The bytes from `from` to `to` (or to the end). */
  async read(from: number, to?: number): Promise<Buffer> {
    const end = to ?? (await this.size());
    if (end <= from) return Buffer.alloc(0);
    const buffer = Buffer.allocUnsafe(end - from);
    let done = 0;
    while (done < buffer.length) {
      const { bytesRead } = await this.handle.read(buffer, done, buffer.length - done, from + done);
      if (bytesRead === 0) break; // shorter than it was a moment ago (truncated by someone)
      done += bytesRead;
    }
    return done === buffer.length ? buffer : buffer.subarray(0, done);
  }

  /** Appends `bytes` at the end (O_APPEND: never over another writer's bytes). */
  async append(bytes: Buffer): Promise<void> {
    if (!this.writable) {
      // Opened read-only: opening it for writing now gives the real reason (EACCES, EROFS).
      const handle = await fs.open(this.file, constants.O_RDWR | constants.O_APPEND | (constants.O_NOFOLLOW ?? 0));
      const stat = await handle.stat();
      if (stat.ino !== this.ino || stat.dev !== this.dev) {
        await handle.close();
        throw Object.assign(new Error(`${this.file} was replaced`), { code: "ESTALE" });
      }
      await this.handle.close().catch(() => undefined);
      this.handle = handle;
      this.writable = true;
    }
    writeAllNow(this.handle.fd, bytes);
  }

  async datasync(): Promise<void> {
    await this.handle.datasync();
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }
}

/**
 * Writes a record into the page cache at once (`write(2)` on a regular file does not wait for
 * the disk; the `fdatasync` after it, which does, stays asynchronous). A record is a few hundred
 * bytes; through the thread pool the write cost an append a round trip of its own.
 */
function writeAllNow(fd: number, bytes: Buffer): void {
  for (let offset = 0; offset < bytes.length; ) offset += writeSync(fd, bytes, offset, bytes.length - offset);
}

async function writeAll(handle: FileHandle, bytes: Buffer): Promise<void> {
  for (let offset = 0; offset < bytes.length; ) offset += (await handle.write(bytes, offset, bytes.length - offset)).bytesWritten;
}
