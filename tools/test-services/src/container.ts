import { spawnSync } from "node:child_process";
import { GenericContainer, getContainerRuntimeClient, type StartedTestContainer, Wait } from "testcontainers";

/** Containers this process started and has not stopped: removed when the process exits. */
const containers = new Set<string>();
let hookInstalled = false;

function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  // Ryuk (testcontainers' reaper) is disabled on these machines, so clean up ourselves. An exit
  // hook must be synchronous: the docker CLI, when it is there, does it.
  process.on("exit", () => {
    for (const id of containers) spawnSync("docker", ["rm", "-f", id], { stdio: "ignore", timeout: 5_000 });
  });
}

export interface ContainerServer {
  readonly container: StartedTestContainer;
  exec(command: string[]): Promise<{ exitCode: number; output: string }>;
  stop(): Promise<void>;
  kill(): Promise<void>;
  restart(): Promise<void>;
}

/**
 * Runs `command` in `image` with host networking: the server listens on the port the caller put
 * in `command`, on the host's loopback. (With host networking `getMappedPort()` throws, so callers
 * use the port they chose; on a machine with a normal bridge this still works.)
 */
export async function startContainer(image: string, command: string[], ready: RegExp): Promise<ContainerServer> {
  process.env.TESTCONTAINERS_RYUK_DISABLED ??= "true";
  process.env.TESTCONTAINERS_HOST_OVERRIDE ??= "127.0.0.1";
  installExitHook();
  const container = await new GenericContainer(image)
    .withNetworkMode("host")
    .withCommand(command)
    .withWaitStrategy(Wait.forLogMessage(ready))
    .withStartupTimeout(30_000)
    .start();
  const id = container.getId();
  containers.add(id);
  return {
    container,
    exec: async (cmd) => {
      const result = await container.exec(cmd);
      return { exitCode: result.exitCode, output: result.output };
    },
    stop: async () => {
      await container.stop({ timeout: 2_000 });
      containers.delete(id);
    },
    kill: async () => {
      const client = await getContainerRuntimeClient();
      await client.container.getById(id).kill({ signal: "SIGKILL" });
    },
    restart: async () => {
      await container.restart({ timeout: 0 });
    },
  };
}
