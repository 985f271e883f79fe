import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The published packages as a TypeScript user gets them: every package packed with `pnpm pack`,
// installed with npm into a plain project outside the workspace, and a file that uses each
// package's public names type-checked with `skipLibCheck: false`, so a `.d.ts` that imports a
// type only a devDependency provides (TS7016) or a name missing from a package fails here.
// Dependencies get the versions the workspace has installed. One install serves every check.

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

interface Manifest {
  name: string;
  private?: boolean;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

const readJson = async <T>(file: string) => JSON.parse(await readFile(file, "utf8")) as T;

/** The published packages' folders: every package under packages/ and drivers/ that is not private. */
async function publishedFolders(): Promise<string[]> {
  const folders: string[] = [];
  for (const parent of ["packages", "drivers"]) {
    for (const name of (await readdir(path.join(root, parent))).sort()) {
      const manifest = await readJson<Manifest>(path.join(root, parent, name, "package.json")).catch(() => undefined);
      if (manifest && !manifest.private) folders.push(`${parent}/${name}`);
    }
  }
  return folders;
}

/** `name@version` of what the workspace installed for `name`, as seen from the folder `from`. */
async function installed(from: string, name: string): Promise<string> {
  for (let dir = path.join(root, from); dir.startsWith(root); dir = path.dirname(dir)) {
    const manifest = await readJson<{ version: string }>(path.join(dir, "node_modules", name, "package.json")).catch(() => undefined);
    if (manifest) return manifest.version;
  }
  throw new Error(`${name} is not installed for ${from}: run pnpm install`);
}

/** The file a user writes: every public name of SPEC section 1, used with its types. */
const USAGE = `
import {
  capabilitiesOf, ConflictError, CorruptDataError, type DriverCapabilities, EventBus, LockTimeoutError,
  MemoryStorageDriver, migrateLegacy, SCHEMA_VERSION, type StorageData, StorageDataSchema, type StorageDriver,
  StorageUnavailableError, type StoredError, type StoredTask, StoredTaskSchema, TaskManager, TaskRepository,
  TaskStoreError, type TaskProgress, type TaskStatus, ValidationError, VersionUnsupportedError,
} from "@taskstore/core";
import { main, EXIT_CODES } from "@taskstore/cli";
import { describeStorageDriver, type ConformanceOptions } from "@taskstore/conformance";
import { JSONFileStorageDriver } from "@taskstore/driver-json-file";
import { PostgresStorageDriver } from "@taskstore/driver-postgres";
import { RedisStorageDriver } from "@taskstore/driver-redis";
import { S3StorageDriver } from "@taskstore/driver-s3";
import { SQLiteStorageDriver } from "@taskstore/driver-sqlite";

export const drivers: StorageDriver[] = [
  new MemoryStorageDriver(),
  new JSONFileStorageDriver({ path: "/tmp/tasks.json" }),
  new SQLiteStorageDriver({ path: "/tmp/tasks.db" }),
  new RedisStorageDriver({ url: "redis://127.0.0.1:6379", prefix: "agent" }),
  new S3StorageDriver({ bucket: "tasks", endpoint: "http://127.0.0.1:9000" }),
  new PostgresStorageDriver({ connectionString: "postgres://127.0.0.1/tasks" }),
];

export async function agent(): Promise<string> {
  const repository = new TaskRepository({ driver: drivers[1] });
  const manager = new TaskManager(new EventBus(), repository);
  await manager.loadFromRepository();
  const id: string = await manager.create({ title: "Build", metadata: { attempt: 1 } });
  const progress: TaskProgress = { percent: 50, currentStep: "compile" };
  await manager.setProgress(id, progress);
  const status: TaskStatus | undefined = manager.findById(id)?.status;
  const stored: StoredTask[] = await repository.loadAll();
  const data: StorageData = StorageDataSchema.parse({ version: SCHEMA_VERSION, tasks: stored, metadata: { lastUpdated: 0, totalTasks: 0 } });
  StoredTaskSchema.parse(data.tasks[0]);
  const caps: DriverCapabilities = capabilitiesOf(drivers[0] as StorageDriver);
  const errors: StoredError[] = (await repository.diagnose()).recentErrors;
  const legacy: StorageData = migrateLegacy([{ text: "old", completed: true }]);
  for (const type of [ConflictError, CorruptDataError, LockTimeoutError, StorageUnavailableError, ValidationError, VersionUnsupportedError]) {
    if (!(type.prototype instanceof TaskStoreError)) throw new Error(type.name);
  }
  // @ts-expect-error a status outside TaskStatus is refused: the types are real, not any
  const wrong: TaskStatus = "done";
  await manager.close();
  return \`\${status} \${caps.locking} \${errors.length} \${legacy.tasks.length} \${wrong}\`;
}

export const suite: ConformanceOptions = {
  name: "memory",
  setup: async () => ({ open: async () => new MemoryStorageDriver(), teardown: async () => {} }),
};
export const declare = () => describeStorageDriver(suite);
export const cli = (): Promise<boolean> =>
  main(["list"], { stdout: process.stdout, stderr: process.stderr, env: process.env, interrupted: new Promise(() => {}) }).then(
    (code) => code === EXIT_CODES.OK,
  );
`;

const work = await mkdtemp(path.join(tmpdir(), "taskstore-packed-types-"));
const project = path.join(work, "project");
const tarballs = path.join(work, "tarballs");
afterAll(() => rm(work, { recursive: true, force: true }));

/** Runs tsc in the project with these compiler options; resolves with its exit code and output. */
async function tsc(options: Record<string, unknown>): Promise<{ code: number; output: string }> {
  const config = `tsconfig.${Object.values(options).join("-") || "base"}.json`;
  await writeFile(
    path.join(project, config),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        skipLibCheck: false,
        noEmit: true,
        target: "es2022",
        module: "nodenext",
        moduleResolution: "nodenext",
        types: ["node"],
        ...options,
      },
      files: ["usage.ts"],
    }),
  );
  try {
    const { stdout, stderr } = await run(path.join(project, "node_modules", ".bin", "tsc"), ["-p", config], {
      cwd: project,
      timeout: 120_000,
    });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === "number" ? failed.code : -1, output: `${failed.stdout ?? ""}${failed.stderr ?? ""}` };
  }
}

describe("the packed packages, installed with npm outside the workspace and type-checked with skipLibCheck: false", {
  timeout: 300_000,
}, () => {
  const packed = new Map<string, string>();

  beforeAll(async () => {
    await mkdir(project, { recursive: true });
    const folders = await publishedFolders();
    expect(folders).toHaveLength(8); // core, cli, conformance and the five drivers (SPEC section 1)
    // Packed from their built dist (the test command builds first), two at a time.
    for (let i = 0; i < folders.length; i += 2) {
      await Promise.all(
        folders.slice(i, i + 2).map(async (folder) => {
          const { stdout } = await run("pnpm", ["pack", "--pack-destination", tarballs], {
            cwd: path.join(root, folder),
            timeout: 120_000,
          });
          packed.set(folder, stdout.trim().split("\n").at(-1) as string);
        }),
      );
    }
    // The same versions as the workspace: each dependency (and required peer) pinned through
    // overrides to what pnpm installed, plus typescript and @types/node at the workspace's.
    const pins: Record<string, string> = {
      typescript: await installed(".", "typescript"),
      "@types/node": await installed(".", "@types/node"),
    };
    for (const folder of folders) {
      const manifest = await readJson<Manifest>(path.join(root, folder, "package.json"));
      const names = [
        ...Object.keys(manifest.dependencies ?? {}),
        ...Object.keys(manifest.peerDependencies ?? {}).filter((name) => !manifest.peerDependenciesMeta?.[name]?.optional),
      ];
      for (const name of names) if (!name.startsWith("@taskstore/")) pins[name] = await installed(folder, name);
    }
    await writeFile(
      path.join(project, "package.json"),
      JSON.stringify({ name: "outside-typescript-user", private: true, type: "module", overrides: pins }, null, 2),
    );
    await writeFile(path.join(project, "usage.ts"), USAGE);
    // --ignore-scripts: no native build of better-sqlite3, which type-checking does not need.
    await run(
      "npm",
      [
        "install",
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",
        "--loglevel=error",
        ...[...packed.values()],
        ...Object.entries(pins).map(([name, version]) => `${name}@${version}`),
      ],
      { cwd: project, timeout: 240_000, maxBuffer: 16 * 1024 * 1024 },
    );
  });

  it("no tarball ships dist/.tsbuildinfo (monorepo paths) and each has its types", async () => {
    for (const [folder, tarball] of packed) {
      const { stdout } = await run("tar", ["-tzf", tarball]);
      expect(stdout, folder).not.toContain(".tsbuildinfo");
      expect(stdout, folder).toContain("package/dist/index.d.ts");
    }
  });

  it("a file using every public name type-checks, strict, with moduleResolution nodenext and node16", async () => {
    for (const mode of ["nodenext", "node16"]) {
      const result = await tsc({ module: mode, moduleResolution: mode });
      expect(result.output, mode).toBe("");
      expect(result.code, mode).toBe(0);
    }
  });

  it("fails when a .d.ts needs a type package the user does not get (as with a devDependency): @types/pg taken away", async () => {
    const types = path.join(project, "node_modules", "@types", "pg");
    const aside = path.join(work, "types-pg-aside");
    await run("mv", [types, aside]);
    try {
      const result = await tsc({});
      expect(result.code).not.toBe(0);
      expect(result.output).toMatch(/TS7016|TS2307/);
      expect(result.output).toMatch(/'pg'/);
    } finally {
      await run("mv", [aside, types]);
    }
  });
});
