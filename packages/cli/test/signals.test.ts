import { execFileSync } from "node:child_process";
import { mkdir, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeHome, ok, PACKAGE_DIR, start, watchLockAttempts, within } from "./helpers.js";

const HOLD_LOCK = path.join(PACKAGE_DIR, "test", "fixtures", "hold-lock.mjs");

// Signals, store paths that would block, and the lock wait: every command ends, and says why.
describe("taskstore ends when asked, and waits for a lock once", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  let opts: { env: NodeJS.ProcessEnv };
  beforeAll(async () => {
    home = await makeHome();
    opts = { env: home.env };
  });
  afterAll(() => home.cleanup());

  /** A JSON store with one task, and another process holding its lock. */
  async function lockedStore(name: string) {
    const dir = path.join(home.dir, name);
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, "tasks.json");
    await ok(["--store", `file:${file}`, "add", "before"], opts);
    const before = await readFile(file, "utf8");
    const holder = start([HOLD_LOCK, file], { env: home.env, node: true });
    await holder.waitFor(/locked/);
    return {
      dir,
      file,
      before,
      async release() {
        holder.child.stdin?.end();
        await holder.exited;
      },
    };
  }

  for (const [signal, code] of [
    ["SIGTERM", 143],
    ["SIGINT", 130],
  ] as const) {
    it(`a verb waiting for a lock held by another process ends at the first ${signal} with exit ${code}, writing nothing`, async () => {
      const store = await lockedStore(`signal-${signal}`);
      const attempts = watchLockAttempts(store.dir);
      // A lock timeout far beyond the test's bound: only the signal can end the command in time.
      const cli = start(["--store", `file:${store.file}`, "--lock-timeout", "10m", "add", "blocked"], opts);
      try {
        await attempts.waitForAttempt(cli.child.pid as number); // it is waiting for the lock now
        cli.child.kill(signal);
        expect(await within(cli.exited, 20_000, `taskstore add after ${signal}`)).toBe(code);
        expect(cli.stderr).toMatch(new RegExp(`^taskstore: interrupted by ${signal} \\(nothing was written\\)\\n$`));
        expect(cli.stdout).toBe("");
        expect(await readFile(store.file, "utf8")).toBe(store.before);
      } finally {
        cli.child.kill("SIGKILL");
        attempts.close();
        await store.release();
      }
      // The store works as before: the interrupted command left no lock behind.
      await ok(["--store", `file:${store.file}`, "--lock-timeout", "5s", "add", "after"], opts);
    });
  }

  it("a FIFO or /dev/zero as the store (file: or sqlite:) is refused at once with exit 2, never opened", async () => {
    const dir = path.join(home.dir, "special");
    await mkdir(dir, { recursive: true });
    const fifo = path.join(dir, "tasks.json");
    execFileSync("mkfifo", [fifo]);
    // The CLI's own check answers, before any driver sees the path.
    const cases: [string, string][] = [
      [`file:${fifo}`, `the store file:${fifo} is a FIFO, not a regular file`],
      [fifo, `the store file:${fifo} is a FIFO, not a regular file`],
      [`sqlite:${fifo}`, `the store sqlite:${fifo} is a FIFO, not a regular file`],
      ["file:/dev/zero", "the store file:/dev/zero is a character device, not a regular file"],
      ["sqlite:/dev/zero", "the store sqlite:/dev/zero is a character device, not a regular file"],
    ];
    for (const [store, message] of cases) {
      for (const args of [["list"], ["add", "x"]]) {
        const cli = start(["--store", store, ...args, "--json"], opts);
        try {
          const code = await within(cli.exited, 20_000, `taskstore --store ${store} ${args[0]}`);
          expect({ store, args, code }).toEqual({ store, args, code: 2 });
        } finally {
          cli.child.kill("SIGKILL");
        }
        const error = JSON.parse(cli.stderr).error;
        expect(error.code).toBe("VALIDATION");
        expect(error.message.startsWith(message)).toBe(true);
        expect(cli.stdout).toBe("");
      }
    }
    // Nothing beside the FIFO: no lock, no backup, no journal.
    expect(await readdir(dir)).toEqual(["tasks.json"]);
  });

  it("--lock-timeout 1s against a held lock: exit 5 with one timeout reported, nothing written", async () => {
    const store = await lockedStore("timeout");
    let cli: ReturnType<typeof start> | undefined;
    try {
      cli = start(["--store", `file:${store.file}`, "--lock-timeout", "1s", "add", "blocked"], opts);
      expect(await within(cli.exited, 20_000, "taskstore add --lock-timeout 1s")).toBe(5);
      const lines = cli.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/could not acquire .* within 1000 ms .*\(nothing was written\)$/);
      expect(await readFile(store.file, "utf8")).toBe(store.before);
    } finally {
      cli?.child.kill("SIGKILL");
      await store.release();
    }
  });

  it("a command that meets a lock timeout does not wait for the lock again (at close): one lock attempt with --lock-timeout 0", async () => {
    // With --lock-timeout 0 the driver tries the lock exactly once per wait, so the number of
    // attempts the command makes is the number of times it waited. A failed write queued for a
    // retry at close() would wait (and try) a second time.
    const store = await lockedStore("one-wait");
    const attempts = watchLockAttempts(store.dir);
    try {
      const id = await firstId(store.file);
      for (const argv of [
        ["add", "blocked"],
        ["log", id, "text"],
        ["start", id],
      ]) {
        const cli = start(["--store", `file:${store.file}`, "--lock-timeout", "0", ...argv], opts);
        const code = await within(cli.exited, 20_000, `taskstore ${argv[0]} --lock-timeout 0`);
        await attempts.settle();
        expect({ verb: argv[0], code, attempts: attempts.count(cli.child.pid as number) }).toEqual({ verb: argv[0], code: 5, attempts: 1 });
        expect(cli.stderr).toMatch(/\(nothing was written\)\n$/);
      }
      expect(await readFile(store.file, "utf8")).toBe(store.before);
    } finally {
      attempts.close();
      await store.release();
    }
  });
});

async function firstId(file: string): Promise<string> {
  const data = JSON.parse(await readFile(file, "utf8")) as { tasks: { id: string }[] };
  return (data.tasks[0] as { id: string }).id;
}
