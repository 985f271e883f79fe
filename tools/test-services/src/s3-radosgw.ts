import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServiceUnavailableError } from "./errors.js";
import { freePort, type SpawnedServer, spawnServer, stopServer } from "./processes.js";

/** The Debian packages that hold everything below (`ceph` and `radosgw-admin` come with them, from ceph-common). */
export const RADOSGW_APT_PACKAGES = "radosgw ceph-mon ceph-osd";
export const S3_INSTALL =
  `Install Ceph's S3 gateway (\`apt-get install -y --no-install-recommends ${RADOSGW_APT_PACKAGES}\` on Debian/Ubuntu), ` +
  "or start a Docker engine, or set TASKSTORE_S3_ENDPOINT (with TASKSTORE_S3_ACCESS_KEY_ID and TASKSTORE_S3_SECRET_ACCESS_KEY) " +
  "to an S3 server the tests may write to.";

export interface LocalRadosgw {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  stop(): Promise<void>;
}

/**
 * A throwaway single-node Ceph cluster with its S3 gateway, in a temp folder: one monitor, one
 * OSD on memstore (RAM), one radosgw on a free loopback port, auth off, msgr v1 only, IPv4 only.
 * About 15-25 s to start. Every daemon dies with the test process (spawnServer's exit hook and
 * watchdog); `stop()` also deletes the folder.
 */
export async function startLocalRadosgw(): Promise<LocalRadosgw> {
  const dir = await mkdtemp(join(tmpdir(), "taskstore-ceph-"));
  const daemons: SpawnedServer[] = [];
  const stop = async () => {
    for (const daemon of daemons.reverse()) await stopServer(daemon, "SIGKILL");
    // TASKSTORE_CEPH_KEEP=1 keeps the folder (config and daemon logs) for debugging a failed start.
    if (process.env.TASKSTORE_CEPH_KEEP !== "1") await rm(dir, { recursive: true, force: true });
  };
  try {
    const monPort = await freePort();
    const rgwPort = await freePort();
    const conf = join(dir, "ceph.conf");
    const fsid = randomUUID();
    for (const sub of ["mon", "osd", "run", "log"]) await mkdir(join(dir, sub));
    await writeFile(conf, cephConf(dir, fsid, monPort, rgwPort));
    const ceph = (command: string, args: string[], timeoutMs = 30_000) => run(command, ["-c", conf, ...args], dir, timeoutMs);

    await run("monmaptool", ["--create", "--fsid", fsid, "--addv", "a", `[v1:127.0.0.1:${monPort}]`, join(dir, "monmap")], dir);
    await ceph("ceph-mon", ["--mkfs", "-i", "a", "--monmap", join(dir, "monmap")]);
    daemons.push(await daemon("ceph-mon", ["-f", "-c", conf, "-i", "a"], dir));
    // The OSD's own uuid, given to both sides: an OSD whose uuid differs from the one the monitor
    // recorded is refused at boot ("wrong fsid").
    const osdUuid = randomUUID();
    await retry("the Ceph monitor to answer", 30_000, () => ceph("ceph", ["--connect-timeout", "10", "osd", "create", osdUuid], 15_000));
    await ceph("ceph-osd", ["-i", "0", "--mkfs", "--osd-uuid", osdUuid]);
    await ceph("ceph", ["osd", "crush", "add", "osd.0", "1.0", "host=localhost", "root=default"]);
    daemons.push(await daemon("ceph-osd", ["-f", "-c", conf, "-i", "0"], dir));
    await retry("the Ceph OSD to come up", 60_000, async () => {
      const stat = JSON.parse(await ceph("ceph", ["osd", "stat", "-f", "json"], 10_000)) as { num_up_osds?: number };
      if (stat.num_up_osds !== 1) throw new Error(`osd stat: ${JSON.stringify(stat)}`);
    });
    daemons.push(await daemon("radosgw", ["-f", "-c", conf, "-n", "client.rgw"], dir));
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    await retry("radosgw to answer HTTP", 90_000, () => httpStatus(endpoint));
    const accessKeyId = `TS${randomUUID().replaceAll("-", "").slice(0, 18).toUpperCase()}`;
    const secretAccessKey = randomUUID() + randomUUID();
    await retry("radosgw-admin to create the test user", 30_000, () =>
      ceph("radosgw-admin", [
        "user",
        "create",
        "--uid",
        "taskstore",
        "--display-name",
        "taskstore tests",
        "--access-key",
        accessKeyId,
        "--secret-key",
        secretAccessKey,
      ]),
    );
    return { endpoint, accessKeyId, secretAccessKey, stop };
  } catch (error) {
    const logs = await tailLogs(join(dir, "log"));
    await stop();
    if (error instanceof Error && !(error instanceof ServiceUnavailableError)) error.message += `\n--- Ceph logs ---\n${logs}`;
    throw error;
  }
}

/** The last lines of each daemon log, for a failure message: a cluster that did not start says why there. */
async function tailLogs(dir: string): Promise<string> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const parts: string[] = [];
  for (const name of names) {
    const text = await readFile(join(dir, name), "utf8").catch(() => "");
    const lines = text.split("\n");
    const notable = lines.filter((line) => / -1 |error|fail|wrong/i.test(line)).slice(-15);
    parts.push(`${name} (notable):\n${notable.join("\n")}\n${name} (last lines):\n${lines.slice(-8).join("\n")}`);
  }
  return parts.join("\n");
}

function cephConf(dir: string, fsid: string, monPort: number, rgwPort: number): string {
  return `[global]
fsid = ${fsid}
mon host = v1:127.0.0.1:${monPort}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr2 = false
ms bind ipv4 = true
ms bind ipv6 = false
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
osd objectstore = memstore
memstore device bytes = 2147483648
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
osd crush update on start = false
osd class update on start = false
mon allow pool size one = true
mon warn on pool no redundancy = false
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
log file = ${dir}/log/$name.log
mon data = ${dir}/mon
osd data = ${dir}/osd
keyring = ${dir}/keyring
debug ms = 0
debug rgw = 0
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort} tcp_nodelay=1
rgw data = ${dir}/rgw
`;
}

/**
 * Starts a Ceph daemon in the foreground (its log goes to a file in the temp folder). The shell
 * prints one line, then execs the daemon in its place, so spawnServer's ready line, exit hook and
 * watchdog all apply to the daemon itself.
 */
async function daemon(command: string, args: string[], dir: string): Promise<SpawnedServer> {
  const quoted = [command, ...args].map((arg) => `'${arg.replaceAll("'", "'\\''")}'`).join(" ");
  return spawnServer({
    command: "sh",
    args: ["-c", `command -v ${command} >/dev/null || exit 127; echo spawned; exec ${quoted}`],
    cwd: dir,
    ready: /spawned/,
  }).catch((error: Error) => {
    if (/exited \(127\)/.test(error.message))
      throw new ServiceUnavailableError("S3", `${command} is not on PATH and no Docker engine answers. ${S3_INSTALL}`);
    throw error;
  });
}

/** Runs a command to its end; rejects with its output on a non-zero exit or after `timeoutMs`. */
function run(command: string, args: string[], cwd: string, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      err += chunk.toString();
    });
    child.once("error", (error) => {
      clearTimeout(timer);
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        reject(
          new ServiceUnavailableError("S3", `${command} is not on PATH and no Docker engine answers. ${S3_INSTALL}`, { cause: error }),
        );
      } else reject(error);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`test-services: ${command} ${args.join(" ")} failed (${signal ?? code}):\n${out}${err}`));
    });
  });
}

function httpStatus(endpoint: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(endpoint, { timeout: 2_000 }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve();
      else reject(new Error(`HTTP ${res.statusCode}`));
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end();
  });
}

async function retry(what: string, timeoutMs: number, attempt: () => Promise<unknown>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await attempt();
      return;
    } catch (error) {
      if (error instanceof ServiceUnavailableError) throw error;
      if (Date.now() > deadline)
        throw new Error(`test-services: timed out waiting for ${what}: ${(error as Error).message}`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}
