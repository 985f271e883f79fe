import { execFile } from "node:child_process";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, makeHome, ok, run } from "./helpers.js";

const A = "01ABCD00000000000000000001";
const B = "01ABCD00000000000000000002";
const C = "01XYZW00000000000000000003";
const OTHER = "01OTHER0000000000000000009";

function task(id: string, title: string, createdAt: number) {
  return { id, title, status: "pending", progress: { percent: 0 }, metadata: {}, createdAt, updatedAt: createdAt, children: [], logs: [] };
}

/** Runs `script` in a real shell; resolves with its stdout (stderr must stay empty). */
function shell(program: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve) => {
    execFile(program, args, { env, cwd: env.HOME, timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ stdout, stderr, code: typeof error?.code === "number" ? error.code : 0 }),
    );
  });
}

describe("shell completion in real bash, zsh and fish", () => {
  let home: Awaited<ReturnType<typeof makeHome>>;
  let env: NodeJS.ProcessEnv;
  let otherStore: string;
  beforeAll(async () => {
    home = await makeHome();
    // `taskstore` on PATH, as an installed CLI is.
    const bin = path.join(home.dir, "bin");
    await mkdir(bin, { recursive: true });
    await writeFile(path.join(bin, "taskstore"), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`);
    await chmod(path.join(bin, "taskstore"), 0o755);
    const store = path.join(home.dir, "tasks.json");
    const tasks = [task(A, "Alpha", 1), task(B, "Beta: two", 2), task(C, "Gamma", 3)];
    await writeFile(store, JSON.stringify({ version: "1.0.0", tasks, metadata: { lastUpdated: 1, totalTasks: 3 } }));
    otherStore = path.join(home.dir, "other.json");
    await writeFile(
      otherStore,
      JSON.stringify({ version: "1.0.0", tasks: [task(OTHER, "Elsewhere", 1)], metadata: { lastUpdated: 1, totalTasks: 1 } }),
    );
    env = { ...home.env, PATH: `${bin}:${home.env.PATH}`, TASKSTORE_URL: store };
  });
  afterAll(() => home.cleanup());

  it("bash: verbs, options, option values, task ids (from TASKSTORE_URL or the line's --store URL), help and completion arguments", async () => {
    const complete = async (line: string) => {
      const script = `source <(taskstore completion bash) || exit 9
COMP_LINE="$1"; COMP_POINT=\${#COMP_LINE}
read -ra COMP_WORDS <<< "$1"; COMP_CWORD=\${#COMP_WORDS[@]}
_taskstore
printf '%s\\n' "\${COMPREPLY[@]}"`;
      const result = await shell("bash", ["-c", script, "bash", line], env);
      expect({ line, stderr: result.stderr, code: result.code }).toEqual({ line, stderr: "", code: 0 });
      return result.stdout.split("\n").filter((word) => word !== "");
    };
    expect(await complete("taskstore st")).toEqual(["start"]);
    expect(await complete("taskstore ")).toEqual(expect.arrayContaining(["add", "list", "run", "edit", "completion", "help"]));
    expect(await complete("taskstore ")).not.toContain("__complete");
    expect(await complete("taskstore list --so")).toEqual(["--sort"]);
    expect(await complete("taskstore list --sort ")).toEqual(["created", "updated", "status", "title"]);
    expect(await complete("taskstore list --status r")).toEqual(["running"]);
    expect(await complete("taskstore log 01X --type std")).toEqual(["stdout", "stderr"]);
    expect(await complete("taskstore show ")).toEqual([A, B, C]);
    expect(await complete("taskstore show 01AB")).toEqual([A, B]);
    expect(await complete("taskstore link 01ABCD00000000000000000001 01x")).toEqual([C]);
    expect(await complete("taskstore link a b ")).toEqual([]);
    expect(await complete("taskstore add x --parent 01X")).toEqual([C]);
    expect(await complete(`taskstore --store file:${otherStore} rm `)).toEqual([OTHER]);
    expect(await complete(`taskstore --store=file:${otherStore} rm `)).toEqual([OTHER]);
    expect(await complete("taskstore help co")).toEqual(["complete", "copy", "completion"]);
    expect(await complete("taskstore completion ")).toEqual(["bash", "zsh", "fish"]);
    expect(await complete("taskstore run -- ma")).toEqual([]);
  });

  it("zsh: the script registers _taskstore after compinit; a real Tab completes a verb and a unique id prefix; ids come with their titles", async () => {
    const direct = `autoload -U compinit && compinit -u -D
source <(taskstore completion zsh) || exit 9
print -r -- "registered: \${_comps[taskstore]}"
_describe() { local name=\${@[-1]}; print -rl -- "\${(@P)name}"; }
words=(taskstore show ""); CURRENT=3; _taskstore
words=(taskstore list --sort u); CURRENT=4; _taskstore`;
    const listed = await shell("zsh", ["-f", "-c", direct], env);
    expect(listed.stderr).toBe("");
    expect(listed.stdout.split("\n")).toEqual(["registered: _taskstore", `${A}:Alpha`, `${B}:Beta: two`, `${C}:Gamma`, "updated", ""]);
    // A real interactive zsh in a pseudo-terminal (zsh's own zpty): type, press Tab, read the line back.
    const tab = `zmodload zsh/zpty
zpty -b z 'zsh -f -i'
zpty -w z 'PS1="> "; autoload -U compinit; compinit -u -D; source <(taskstore completion zsh)'
typeset out line
tabbed() {
  zpty -w -n z "$1"$'\\t'
  out=""
  repeat 600; do
    zpty -r -t z line && out+=$line || sleep 0.05
    [[ \${out//$'\\e'\\[[0-9;?]#[a-zA-Z]/} == *"$2"* ]] && { print -r -- "seen: $2"; break }
  done
  zpty -w z $'\\C-u'
}
tabbed "taskstore star" "taskstore start "
tabbed "taskstore show 01XY" "taskstore show ${C} "
zpty -d z`;
    const typed = await shell("zsh", ["-f", "-c", tab], env);
    expect(typed.stdout).toContain("seen: taskstore start \n");
    expect(typed.stdout).toContain(`seen: taskstore show ${C} \n`);
  });

  it("fish: complete -C gives verbs with their summaries, ids with their titles, and option values", async () => {
    const fish = async (line: string) => {
      const result = await shell("fish", ["-c", `taskstore completion fish | source; complete -C"${line}"`], env);
      expect({ line, stderr: result.stderr }).toEqual({ line, stderr: "" });
      return result.stdout.split("\n").filter((word) => word !== "");
    };
    expect(await fish("taskstore star")).toEqual(["start\tpending -> running"]);
    expect(await fish("taskstore show 01")).toEqual([`${A}\tAlpha`, `${B}\tBeta: two`, `${C}\tGamma`]);
    expect(await fish("taskstore list --status pa")).toEqual(["paused"]);
    expect(await fish(`taskstore --store file:${otherStore} edit `)).toEqual([`${OTHER}\tElsewhere`]);
  });

  it("completion of an unknown shell is exit 2; __complete is hidden from help and offers nothing, quietly, for a store it cannot read", async () => {
    expect((await run(["completion", "tcsh"], { env })).code).toBe(2);
    expect(await ok(["help"], { env })).not.toContain("__complete");
    const broken = await run(["__complete", "--", "taskstore", "--store", "redis://127.0.0.1:1/0", "show", ""], { env });
    expect(broken).toEqual({ code: 0, stdout: "", stderr: "" });
  });
});
