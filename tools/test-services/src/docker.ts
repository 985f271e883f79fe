import { existsSync } from "node:fs";
import { request } from "node:http";

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
