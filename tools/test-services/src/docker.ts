import { existsSync } from "node:fs";
import { request } from "node:http";
import { ServiceUnavailableError } from "./errors.js";

/**
 * True when a Docker engine answers on `DOCKER_HOST` (a unix socket) or the default socket.
 * A TCP `DOCKER_HOST` is trusted as it is: testcontainers reports a failure if it is wrong.
 */
export async function dockerReachable(): Promise<boolean> {
  const host = process.env.DOCKER_HOST;
  if (host && !host.startsWith("unix://")) return true;
  const socketPath = host ? host.slice("unix://".length) : "/var/run/docker.sock";
  if (!existsSync(socketPath)) return false;
  return new Promise((resolve) => {
    const req = request({ socketPath, path: "/_ping", timeout: 1_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

/**
 * `TASKSTORE_REQUIRE_CONTAINERS=1` (set by the container pass, scripts/test-containers.sh): every
 * server must come from a container; falling back to a local binary is an error.
 */
export function containersRequired(): boolean {
  return process.env.TASKSTORE_REQUIRE_CONTAINERS === "1";
}

/**
 * Whether a server is to be a container: yes when an engine answers; no (the local binary) when
 * none does, unless containers are required, which throws `ServiceUnavailableError` instead.
 */
export async function useDocker(service: string, install: string): Promise<boolean> {
  if (await dockerReachable()) return true;
  if (containersRequired()) {
    throw new ServiceUnavailableError(
      service,
      `TASKSTORE_REQUIRE_CONTAINERS=1 (the container pass) but no Docker engine answers on ${process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock"}; this pass never falls back to local binaries. ${install}`,
    );
  }
  return false;
}
