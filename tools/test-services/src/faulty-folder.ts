import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ServiceUnavailableError } from "./errors.js";
import { spawnServer, stopServer } from "./processes.js";

const PYTHON = "/usr/bin/python3";
const SCRIPT = fileURLToPath(new URL("../faultfs.py", import.meta.url));
const HOW = "Install Debian's fuse3 and python3-fusepy (scripts/setup.sh does) and run as root with /dev/fuse present.";

/** A real folder mounted through FUSE, whose folder fsync can fail and whose stamps can be coarse on demand. */
export interface FaultyFolder {
  /** The mounted folder: use it like any other. */
  readonly path: string;
  /** From now on, fsync of a folder in it fails with EIO (`true`), or works again (`false`). */
  failFolderSync(on: boolean): Promise<void>;
  /**
   * From now on (`true`), every `*.json` file in it reports one inode number and times cut to the
   * minute: a newer file then has the identity of the one it replaced, as on a file system with
   * coarse stamps that reuses inode numbers.
   */
  coarseStamps(on: boolean): Promise<void>;
  /** Unmounts and deletes everything. */
  stop(): Promise<void>;
}

/**
 * Mounts a pass-through FUSE file system (`faultfs.py`) over a temp folder. The fault is the
 * kernel's real answer to the fsync call, not a stub in the code under test.
 */
export async function startFaultyFolder(): Promise<FaultyFolder> {
  if (!existsSync("/dev/fuse")) throw new ServiceUnavailableError("FUSE", `/dev/fuse is missing. ${HOW}`);
  const probe = spawnSync(PYTHON, ["-c", "import fusepy"], { encoding: "utf8" });
  if (probe.status !== 0) throw new ServiceUnavailableError("FUSE", `${PYTHON} cannot import fusepy. ${HOW}`);
  const base = await mkdtemp(path.join(tmpdir(), "taskstore-faultfs-"));
  const backing = path.join(base, "backing");
  const mount = path.join(base, "mount");
  await mkdir(backing);
  await mkdir(mount);
  let server: Awaited<ReturnType<typeof spawnServer>>;
  try {
    server = await spawnServer({ command: PYTHON, args: [SCRIPT, backing, mount], cwd: base, ready: /faultfs ready/ });
  } catch (error) {
    await rm(base, { recursive: true, force: true });
    throw new ServiceUnavailableError("FUSE", `faultfs did not mount: ${(error as Error).message}. ${HOW}`, { cause: error });
  }
  const toggle = async (control: string, on: boolean) => {
    if (on) await writeFile(path.join(backing, control), "");
    else await rm(path.join(backing, control), { force: true });
  };
  return {
    path: mount,
    failFolderSync: (on) => toggle(".fail-fsyncdir", on),
    coarseStamps: (on) => toggle(".coarse", on),
    stop: async () => {
      // Unmounting ends the FUSE process; a lazy unmount if something still has a file open.
      if (spawnSync("umount", [mount]).status !== 0) spawnSync("umount", ["-l", mount]);
      await stopServer(server);
      await rm(base, { recursive: true, force: true });
    },
  };
}
