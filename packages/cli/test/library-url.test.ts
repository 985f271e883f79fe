import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { json, makeHome, PACKAGE_DIR } from "./helpers.js";

const exec = promisify(execFile);

// The seed's Basic Usage, as an agent runs it: `new TaskRepository()` with no driver, in a
// program whose store is chosen by TASKSTORE_URL, like the CLI's.
const AGENT = `
import { EventBus, TaskManager, TaskRepository } from "@taskstore/core";
const manager = new TaskManager(new EventBus(), new TaskRepository());
await manager.loadFromRepository();
const id = await manager.create({ title: process.argv[1] });
console.log(JSON.stringify({ id, driver: (await manager.repository.getDriver()).name }));
await manager.close();
`;

describe("one store URL for the library and the CLI", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  beforeAll(async () => {
    home = await makeHome();
  });
  afterAll(() => home?.cleanup());

  const agent = async (title: string, env: NodeJS.ProcessEnv) => {
    const { stdout } = await exec(process.execPath, ["--input-type=module", "-e", AGENT, title], { cwd: PACKAGE_DIR, env });
    return JSON.parse(stdout) as { id: string; driver: string };
  };

  it("new TaskRepository() honours TASKSTORE_URL, so an agent and `taskstore` see the same store", async () => {
    const db = path.join(home.dir, "shared.db");
    const env = { ...home.env, TASKSTORE_URL: `sqlite:${db}` };
    const written = await agent("written by the agent", env);
    expect(written.driver).toBe("sqlite");
    const { tasks } = await json<{ tasks: { id: string; title: string }[] }>(["list"], { env });
    expect(tasks.map((task) => [task.id, task.title])).toEqual([[written.id, "written by the agent"]]);
  });

  it("without TASKSTORE_URL both use the default JSON file store", async () => {
    const env = { ...home.env };
    delete env.TASKSTORE_URL;
    const written = await agent("in the default store", env);
    expect(written.driver).toBe("json-file");
    const { tasks } = await json<{ tasks: { id: string }[] }>(["list"], { env });
    expect(tasks.map((task) => task.id)).toContain(written.id);
  });

  it("a TASKSTORE_URL that cannot be read fails with VALIDATION before anything is opened", async () => {
    const env = { ...home.env, TASKSTORE_URL: "nosuch://x" };
    await expect(agent("never", env)).rejects.toThrow(/unknown store scheme "nosuch:"/);
  });
});
