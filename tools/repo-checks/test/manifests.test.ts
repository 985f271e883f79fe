import { execFile } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const PUBLISHED = [
  "packages/core",
  "packages/conformance",
  "packages/cli",
  "drivers/json-file",
  "drivers/sqlite",
  "drivers/redis",
  "drivers/s3",
  "drivers/postgres",
];

interface Manifest {
  name: string;
  license?: string;
  repository?: { url?: string; directory?: string };
  homepage?: string;
  bugs?: { url?: string };
  keywords?: string[];
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

const manifest = async (folder: string) => JSON.parse(await readFile(path.join(root, folder, "package.json"), "utf8")) as Manifest;

describe("the published packages' manifests and tarballs", () => {
  for (const folder of PUBLISHED) {
    it(`${folder}: license, links and keywords, a LICENSE and README in the tarball, no build leftovers`, async () => {
      const m = await manifest(folder);
      expect(m.license).toBe("MIT");
      expect(m.repository?.directory).toBe(folder);
      expect(m.homepage).toMatch(/^https:\/\//);
      expect(m.bugs?.url).toMatch(/^https:\/\//);
      expect(m.keywords?.length).toBeGreaterThan(1);
      const { stdout } = await run("pnpm", ["pack", "--dry-run", "--json"], { cwd: path.join(root, folder), maxBuffer: 16 * 1024 * 1024 });
      const files = (JSON.parse(stdout) as { files: { path: string }[] }).files.map((file) => file.path);
      expect(files).toContain("LICENSE");
      expect(files).toContain("README.md");
      expect(files.filter((file) => file.includes("tsbuildinfo") || file.includes("/test/"))).toEqual([]);
    });

    it(`${folder}: every package its type declarations import is a dependency or peer (types included)`, async () => {
      const m = await manifest(folder);
      const dist = path.join(root, folder, "dist");
      const imported = new Set<string>();
      for (const file of (await readdir(dist)).filter((name) => name.endsWith(".d.ts"))) {
        const text = await readFile(path.join(dist, file), "utf8");
        for (const [, specifier] of text.matchAll(/from "([^".][^"]*)"/g)) {
          if (specifier?.startsWith("node:")) continue;
          const name = specifier?.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : (specifier?.split("/")[0] as string);
          imported.add(name as string);
        }
      }
      const declared = { ...m.dependencies, ...m.peerDependencies };
      for (const name of imported) {
        const typesName = `@types/${name.replace(/^@/, "").replace("/", "__")}`;
        const hasOwnTypes = await readFile(path.join(root, folder, "node_modules", name, "package.json"), "utf8")
          .then((text) => {
            const pkg = JSON.parse(text) as { types?: string; typings?: string; exports?: unknown };
            return Boolean(pkg.types ?? pkg.typings ?? JSON.stringify(pkg.exports ?? "").includes("types"));
          })
          .catch(() => false);
        expect(name in declared, `${name} is imported by the declarations`).toBe(true);
        if (!hasOwnTypes) expect(typesName in declared, `${typesName} (types of ${name}) is a dependency`).toBe(true);
      }
    });
  }
});
