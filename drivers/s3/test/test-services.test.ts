import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const script = fileURLToPath(new URL("./fixtures/start-s3.mjs", import.meta.url));

it("startS3() with no endpoint, no Docker and no Ceph binaries fails under CI=true, naming the apt packages", async () => {
  const env: NodeJS.ProcessEnv = {
    PATH: "/nonexistent",
    CI: "true",
    DOCKER_HOST: "unix:///nonexistent/docker.sock",
    HOME: process.env.HOME,
  };
  const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    execFile(process.execPath, [script], { env, timeout: 60_000 }, (error, _stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stderr });
    });
  });
  expect(result.code).toBe(3);
  expect(result.stderr).toMatch(/ServiceUnavailableError: test-services: no S3 server for this test run \(CI=true\)/);
  expect(result.stderr).toContain("apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd");
});
