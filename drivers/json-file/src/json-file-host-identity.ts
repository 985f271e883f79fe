import { readFileSync, readlinkSync } from "node:fs";
import os from "node:os";

/**
 * What tells one running process from every other on a machine: a pid alone does not, since a
 * pid means something only in its PID namespace (a container sharing the store folder has its
 * own pid 1, 2, ...) and only during one boot. On Linux the kernel gives both: the boot id
 * (`/proc/sys/kernel/random/boot_id`, new at every boot) and the PID namespace's id (the inode
 * behind `/proc/self/ns/pid`). Elsewhere neither exists, and neither do PID namespaces.
 */
export interface ProcessIdentity {
  pid: number;
  host: string;
  /** Linux only: the kernel's boot id. */
  bootId?: string;
  /** Linux only: the PID namespace, as `readlink /proc/self/ns/pid` shows it (`pid:[4026531836]`). */
  pidNamespace?: string;
  /**
   * Linux only: when the process started, in clock ticks since boot (`/proc/<pid>/stat` field 22),
   * so a pid reused by a newer process is not mistaken for the holder.
   */
  startTime?: number;
}

const isLinux = process.platform === "linux";

let mine: ProcessIdentity | undefined;

/** This process's identity (read once; the pid is read each time, a fork has its own). */
export function ownIdentity(): ProcessIdentity {
  if (mine?.pid !== process.pid) {
    const bootId = isLinux ? readTrimmed("/proc/sys/kernel/random/boot_id") : undefined;
    const pidNamespace = isLinux ? readLink("/proc/self/ns/pid") : undefined;
    // /proc/self is this process only when /proc belongs to its PID namespace; otherwise no start time.
    const self = isLinux ? readStat("/proc/self/stat") : undefined;
    const startTime = self && self.pid === process.pid ? self.startTime : undefined;
    mine = {
      pid: process.pid,
      host: os.hostname(),
      ...(bootId ? { bootId } : {}),
      ...(pidNamespace ? { pidNamespace } : {}),
      ...(startTime !== undefined ? { startTime } : {}),
    };
  }
  return mine;
}

/**
 * Whether a pid recorded by `holder` can be checked from here: same host, same boot and same PID
 * namespace. On Linux all three must be known and equal (a record without them, made by an older
 * version or on a system without /proc, cannot be checked); on other systems, which have no PID
 * namespaces, the host is enough.
 */
export function canCheckPid(holder: Partial<ProcessIdentity>): boolean {
  const own = ownIdentity();
  if (holder.host !== own.host || typeof holder.pid !== "number") return false;
  if (!isLinux) return holder.bootId === undefined && holder.pidNamespace === undefined;
  return (
    own.bootId !== undefined && own.pidNamespace !== undefined && holder.bootId === own.bootId && holder.pidNamespace === own.pidNamespace
  );
}

/**
 * Whether the process `holder` names is gone. Only meaningful when `canCheckPid(holder)`: the pid
 * does not exist, or it belongs to a process that started at another time (the pid was reused).
 */
export function isGone(holder: ProcessIdentity): boolean {
  if (!isAlive(holder.pid)) return true;
  if (holder.startTime === undefined || !isLinux || ownIdentity().startTime === undefined) return false;
  const stat = readStat(`/proc/${holder.pid}/stat`);
  if (!stat) return false; // it exists (kill said so) but cannot be read: assume it is the holder
  return stat.startTime !== holder.startTime;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM"; // exists, but belongs to another user
  }
}

function readTrimmed(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

function readLink(file: string): string | undefined {
  try {
    return readlinkSync(file) || undefined;
  } catch {
    return undefined;
  }
}

/** The pid and start time from a `/proc/<pid>/stat` line (the command name, in parentheses, may hold spaces). */
function readStat(file: string): { pid: number; startTime: number } | undefined {
  const line = readTrimmed(file);
  if (!line) return undefined;
  const close = line.lastIndexOf(")");
  const fields = line.slice(close + 2).split(" ");
  // After the name: state is field 3, start time field 22, so index 22 - 3 = 19 here.
  const startTime = Number(fields[19]);
  const pid = Number.parseInt(line, 10);
  if (!Number.isSafeInteger(startTime) || !Number.isSafeInteger(pid)) return undefined;
  return { pid, startTime };
}
