import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const FOLDERS = ["packages", "drivers", "tools", "examples"];

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  peerDependencies?: Record<string, string>;
}

/** Every workspace package's folder (relative to the root) and manifest. */
async function workspace(base: string): Promise<[string, Manifest][]> {
  const found: [string, Manifest][] = [];
  for (const folder of FOLDERS) {
    for (const name of await readdir(path.join(base, folder))) {
      const file = path.join(base, folder, name, "package.json");
      const text = await readFile(file, "utf8").catch(() => undefined);
      if (text) found.push([path.join(folder, name), JSON.parse(text) as Manifest]);
    }
  }
  return found;
}

const work = await mkdtemp(path.join(tmpdir(), "taskstore-versions-"));
afterAll(() => rm(work, { recursive: true, force: true }));

describe("versioning (changesets)", () => {
  it("`changeset version` on the pending changesets moves every published package to one version, and no private one", async () => {
    // A copy of what changesets reads: the manifests, the workspace file and the changesets.
    for (const file of ["package.json", "pnpm-workspace.yaml"]) await cp(path.join(root, file), path.join(work, file));
    await cp(path.join(root, ".changeset"), path.join(work, ".changeset"), { recursive: true });
    const before = await workspace(root);
    for (const [folder] of before) {
      await mkdir(path.join(work, folder), { recursive: true });
      await cp(path.join(root, folder, "package.json"), path.join(work, folder, "package.json"));
    }
    await run("git", ["init", "-q"], { cwd: work });
    await run(path.join(root, "node_modules", ".bin", "changeset"), ["version"], { cwd: work, timeout: 120_000 });

    const after = new Map((await workspace(work)).map(([folder, manifest]) => [folder, manifest]));
    const published = before.filter(([, manifest]) => !manifest.private);
    expect(published.length).toBeGreaterThanOrEqual(8);
    const versions = new Set(published.map(([folder]) => after.get(folder)?.version));
    expect([...versions]).toHaveLength(1);
    const [version] = versions;
    for (const [folder, manifest] of published) {
      expect(isNewer(version as string, manifest.version), `${folder} moves forward`).toBe(true);
      // Peer ranges on core stay the workspace protocol (pnpm publishes them as ^<version>).
      if (manifest.peerDependencies?.["@taskstore/core"]) {
        expect(after.get(folder)?.peerDependencies?.["@taskstore/core"]).toBe("workspace:^");
      }
    }
    for (const [folder, manifest] of before.filter(([, m]) => m.private)) {
      expect(after.get(folder)?.version, `${folder} is private and keeps its version`).toBe(manifest.version);
    }
  });
});

/** a > b for plain x.y.z versions. */
function isNewer(a: string, b: string): boolean {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] as number) !== (pb[i] as number)) return (pa[i] as number) > (pb[i] as number);
  return false;
}
