import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chown, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { type ContainerInfo, imageFor, listenAddress, startContainer } from "./container.js";
import { useDocker } from "./docker.js";
import { ServiceUnavailableError } from "./errors.js";
import { freePort, PortTakenError, type SpawnedServer, spawnServer, stopServer } from "./processes.js";

const run = promisify(execFile);
const READY = /database system is ready to accept connections/i;
const PORT_TAKEN = /Address already in use|could not create any TCP\/IP sockets/i;
const INSTALL =
  "Install PostgreSQL 15 (`apt-get install -y postgresql-15` on Debian/Ubuntu; binaries expected in " +
  "/usr/lib/postgresql/15/bin or TASKSTORE_POSTGRES_BIN), or start a Docker engine, or set TASKSTORE_POSTGRES_URL " +
  "to a database the tests may write to.";

export interface StartPostgresOptions {
  /** Run with `fsync=on` (for tests that crash the server). Default false: faster, and fine while the server is stopped cleanly. */
  fsync?: boolean;
  /** A server of this run's own, that `kill()` and `restart()` act on: `TASKSTORE_POSTGRES_URL` is not used. Default false. */
  dedicated?: boolean;
}

export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust authentication). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly source: "env" | "docker" | "local";
  /** The container it runs in, when `source` is "docker". */
  readonly container?: ContainerInfo;
  /** Stops the server (fast shutdown) and deletes its data. For a server from the environment: nothing. */
  stop(): Promise<void>;
  /** Immediate stop (`pg_ctl -m immediate`): no checkpoint, crash recovery on restart. Keeps the data folder. */
  kill(): Promise<void>;
  /** Starts the server again on the same data folder and port (after `kill()`, or while running). */
  restart(): Promise<void>;
}

/**
 * A PostgreSQL server for this test run: `TASKSTORE_POSTGRES_URL` when set (unless `dedicated`),
 * else a container when a Docker engine answers, else the local PostgreSQL 15 binaries on a free
 * loopback port in a temp folder (as the `postgres` user when this process is root: PostgreSQL
 * refuses to run as root). Throws `ServiceUnavailableError` saying what to install when none can be had.
 */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const fromEnv = process.env.TASKSTORE_POSTGRES_URL;
  if (fromEnv && !options.dedicated) {
    const parsed = new URL(fromEnv);
    const refuse = async () => {
      throw new Error("test-services: the server from TASKSTORE_POSTGRES_URL cannot be killed or restarted; ask for { dedicated: true }");
    };
    return {
      url: fromEnv,
      host: parsed.hostname,
      port: Number(parsed.port || 5432),
      source: "env",
      stop: async () => undefined,
      kill: refuse,
      restart: refuse,
    };
  }
  const fsync = options.fsync ?? false;
  if (await useDocker("PostgreSQL", INSTALL)) return startContainerPostgres(fsync);
  return startLocalPostgres(fsync);
}

function settings(port: number, fsync: boolean, listen = "127.0.0.1"): string[] {
  return ["-p", String(port), "-c", `listen_addresses=${listen}`, "-c", `fsync=${fsync ? "on" : "off"}`, "-c", "max_connections=200"];
}

async function startLocalPostgres(fsync: boolean): Promise<PostgresServer> {
  const bin = process.env.TASKSTORE_POSTGRES_BIN ?? "/usr/lib/postgresql/15/bin";
  if (!existsSync(join(bin, "initdb")) || !existsSync(join(bin, "postgres"))) {
    throw new ServiceUnavailableError("PostgreSQL", `${bin}/postgres is missing and no Docker engine answers. ${INSTALL}`);
  }
  const root = await mkdtemp(join(tmpdir(), "taskstore-pg-"));
  const data = join(root, "data");
  // PostgreSQL refuses to run as root: as root, run it as the `postgres` user. setpriv execs in
  // place (runuser forks), so the process spawnServer watches is the postmaster itself.
  const asRoot = process.getuid?.() === 0;
  const command = (program: string, args: string[]): [string, string[]] =>
    asRoot
      ? ["setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", "--", join(bin, program), ...args]]
      : [join(bin, program), args];
  try {
    await mkdir(data, { mode: 0o700 });
    if (asRoot) {
      const ids = await run("id", ["-u", "postgres"]).then(async (uid) => [
        Number(uid.stdout),
        Number((await run("id", ["-g", "postgres"])).stdout),
      ]);
      await chown(root, ids[0] as number, ids[1] as number);
      await chown(data, ids[0] as number, ids[1] as number);
    }
    await run(...command("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]), {
      timeout: 60_000,
    });
  } catch (error) {
    await rm(root, { recursive: true, force: true });
    throw new ServiceUnavailableError("PostgreSQL", `initdb failed (${(error as Error).message}). ${INSTALL}`, { cause: error });
  }

  let port = 0;
  let server: SpawnedServer | undefined;
  const launch = (): Promise<SpawnedServer> => {
    const [program, args] = command("postgres", ["-D", data, "-k", root, ...settings(port, fsync)]);
    return spawnServer({
      command: program,
      args,
      cwd: root,
      ready: READY,
      portTaken: PORT_TAKEN,
      timeoutMs: 30_000,
    });
  };
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      server = await launch();
      break;
    } catch (error) {
      if (!(error instanceof PortTakenError) || attempt >= 5) {
        await rm(root, { recursive: true, force: true });
        throw error;
      }
    }
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    host: "127.0.0.1",
    port,
    source: "local",
    stop: async () => {
      // SIGINT is PostgreSQL's "fast" shutdown (SIGTERM, "smart", would wait for every client to leave).
      if (server) await stopServer(server, "SIGINT");
      await rm(root, { recursive: true, force: true });
    },
    kill: async () => {
      if (!server) return;
      // pg_ctl signals the postmaster (SIGQUIT); the signal below only acts if pg_ctl could not.
      await run(...command("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]), { timeout: 30_000 }).catch(() => undefined);
      await stopServer(server, "SIGQUIT");
    },
    restart: async () => {
      if (server) await stopServer(server, "SIGINT");
      server = await launch();
    },
  };
}

/**
 * PostgreSQL in a container: the official image or taskstore-test/postgres (whose entrypoint
 * behaves the same for what is used here: trust authentication, initdb on first start, the
 * server as PID 1, data in /var/lib/postgresql/data). Ready when `pg_isready` reaches it over
 * TCP, which the official image's initdb-time server (sockets only) never answers. Stopped and
 * restarted with SIGINT (fast shutdown); `kill()` sends SIGQUIT to the postmaster, which is
 * what `pg_ctl -m immediate stop` does: no checkpoint, crash recovery on the next start.
 */
async function startContainerPostgres(fsync: boolean): Promise<PostgresServer> {
  const port = await freePort();
  const image = imageFor("postgres");
  try {
    const server = await startContainer({
      service: "postgres",
      image,
      environment: { POSTGRES_HOST_AUTH_METHOD: "trust" },
      command: ["postgres", ...settings(port, fsync, listenAddress())],
      ports: [port],
      wait: (Wait) => Wait.forSuccessfulCommand(`pg_isready -q -h 127.0.0.1 -p ${port}`),
      ready: async (self) => (await self.exec(["pg_isready", "-q", "-h", "127.0.0.1", "-p", String(port)])).exitCode === 0,
      stopSignal: "SIGINT",
      startupTimeoutMs: 60_000,
    });
    return {
      url: `postgres://postgres@${server.host}:${port}/postgres`,
      host: server.host,
      port,
      source: "docker",
      container: { id: server.id, image: server.image },
      stop: () => server.stop(),
      kill: () => server.kill("SIGQUIT"),
      restart: () => server.restart(),
    };
  } catch (error) {
    throw new ServiceUnavailableError(
      "PostgreSQL",
      `Docker answered but the ${image} container did not start (${(error as Error).message}). ${INSTALL}`,
      {
        cause: error,
      },
    );
  }
}
