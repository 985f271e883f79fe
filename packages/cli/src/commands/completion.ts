import { type Command, type Completion, type Context, type OptionSpec, withStore } from "../command.js";
import { FINISHED, idOf, readableTasks } from "../render.js";
import { escapeText } from "../text.js";
import { UsageError } from "../usage-error.js";

/** Set by cli.ts (which holds the list of verbs), so completion sees every verb and global option. */
export const registry: { commands: Command[]; globals: Record<string, OptionSpec> } = { commands: [], globals: {} };

const SHELLS = ["bash", "zsh", "fish"] as const;

/** A slow or unreachable store must not hang the shell: ids that take longer are not offered. */
const ID_DEADLINE_MS = 2_000;

export const completion: Command = {
  name: "completion",
  summary: "print the shell completion script for bash, zsh or fish",
  usage: "completion bash|zsh|fish",
  details: `Completes verbs, options, their values (statuses, sort keys, log types) and task ids.
Each Tab runs taskstore (the hidden verb __complete), so ids come from the store the command line
names (--store), else TASKSTORE_URL, else the default file.
  bash: source <(taskstore completion bash)            (in ~/.bashrc)
  zsh:  source <(taskstore completion zsh)             (in ~/.zshrc, after compinit)
  fish: taskstore completion fish > ~/.config/fish/completions/taskstore.fish`,
  options: {},
  positionals: { min: 1, max: 1 },
  completes: [SHELLS],
  async run(ctx, args) {
    const shell = args.positionals[0] as string;
    if (!SHELLS.includes(shell as (typeof SHELLS)[number]))
      throw new UsageError(`no completion for "${shell}": one of ${SHELLS.join(", ")}`, "completion");
    ctx.stdout.write(SCRIPTS[shell as (typeof SHELLS)[number]]);
  },
};

export const completeWords: Command = {
  name: "__complete",
  summary: "the candidates for the word at the end of a command line (for the completion scripts)",
  usage: "__complete --line LINE | __complete -- WORD... (the last word being the one to complete)",
  options: { line: { type: "string", value: "LINE", description: "the command line up to the cursor" } },
  positionals: { min: 0, max: 0 },
  takesCommand: true,
  hidden: true,
  async run(ctx, args) {
    const line = typeof args.values.line === "string" ? args.values.line : undefined;
    const words = line !== undefined ? splitWords(line) : [...(args.command ?? [])];
    if (words.length === 0) words.push("");
    try {
      const candidates = await candidatesFor(ctx, words.slice(1));
      if (candidates.length > 0)
        ctx.stdout.write(`${candidates.map(([value, about]) => (about ? `${value}\t${about}` : value)).join("\n")}\n`);
    } catch {
      // Completion never prints an error into the user's command line: nothing to offer.
    }
  },
};

/** [value, description] pairs for the last of `words` (the command line after "taskstore"). */
async function candidatesFor(ctx: Context, words: string[]): Promise<[string, string?][]> {
  const current = words.pop() ?? "";
  const { commands, globals } = registry;
  let verb: Command | undefined;
  let store: string | undefined;
  let positionals = 0;
  let valueFor: OptionSpec | undefined; // the option whose value the current word is
  for (let i = 0; i < words.length; i++) {
    const word = words[i] as string;
    if (word === "--") return []; // a command line for `run`: the shell's own completion is better
    const options = { ...globals, ...(verb?.options ?? {}) };
    if (word.startsWith("-") && word.length > 1) {
      const [name, inline] = word.startsWith("--")
        ? [word.slice(2).split("=")[0] as string, word.includes("=")]
        : [shortName(options, word), false];
      const spec = name === undefined ? undefined : options[name];
      if (spec?.type === "string" && !inline) {
        if (i === words.length - 1) valueFor = spec;
        else if (name === "store") store = words[i + 1];
        i++;
      } else if (name === "store" && inline) store = word.slice(word.indexOf("=") + 1);
      continue;
    }
    if (!verb) {
      verb = commands.find((c) => c.name === word);
      if (!verb) return [];
      continue;
    }
    positionals++;
  }
  const matches = (value: string) => value.toLowerCase().startsWith(current.toLowerCase());
  const fixed = (list: readonly string[]) => list.filter(matches).map((value): [string] => [value]);
  const offer = async (what: Completion | undefined): Promise<[string, string?][]> => {
    if (what === undefined) return [];
    if (what === "verb") return commands.filter((c) => !c.hidden && matches(c.name)).map((c) => [c.name, c.summary]);
    if (what === "id") return (await ids(ctx, store ?? ctx.storeUrl)).filter(([id]) => matches(id));
    return fixed(what);
  };
  if (valueFor) return offer(valueFor.complete);
  if (current.startsWith("-")) {
    const options = { ...(verb?.options ?? {}), ...globals };
    return Object.entries(options)
      .map(([name, spec]): [string, string] => [`--${name}`, spec.description])
      .filter(([flag]) => flag.startsWith(current));
  }
  if (!verb) return offer("verb");
  return offer(verb.completes?.[positionals]);
}

function shortName(options: Record<string, OptionSpec>, word: string): string | undefined {
  const letter = word.slice(1, 2);
  return Object.entries(options).find(([, spec]) => spec.short === letter)?.[0];
}

/** The store's task ids with their titles (unfinished ones first), or none when the store cannot be read in time. */
async function ids(ctx: Context, storeUrl: string | undefined): Promise<[string, string][]> {
  let timer: NodeJS.Timeout | undefined;
  const loaded = await Promise.race([
    withStore({ ...ctx, storeUrl }, (store) => store.repository.loadAll()),
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ID_DEADLINE_MS);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
  const { tasks } = readableTasks(loaded);
  const open = tasks.filter((task) => !FINISHED.has(String(task.status)));
  const done = tasks.filter((task) => FINISHED.has(String(task.status)));
  // Titles are shown by the shell: escaped like any task data (a tab or newline would split the line).
  return [...open, ...done].map((task) => [idOf(task), escapeText(typeof task.title === "string" ? task.title : "")]);
}

/** A command line split into words as a shell would (quotes and backslashes); a trailing space starts an empty word. */
export function splitWords(line: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && i + 1 < line.length) word += line[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < line.length) {
      word += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  words.push(inWord ? word : "");
  return words;
}

const BASH = `# taskstore completion for bash: source <(taskstore completion bash)
_taskstore() {
  local line
  COMPREPLY=()
  # The line up to the cursor, split by taskstore itself: bash's own words break at ":" and "=",
  # which would cut a store URL in pieces.
  while IFS= read -r line; do
    COMPREPLY+=("\${line%%$'\\t'*}")
  done < <(command taskstore __complete --line "\${COMP_LINE:0:COMP_POINT}" 2>/dev/null)
}
complete -F _taskstore taskstore
`;

const ZSH = `#compdef taskstore
# taskstore completion for zsh: source <(taskstore completion zsh) after compinit, or save it as
# _taskstore in a folder of $fpath.
_taskstore() {
  local -a candidates
  local line
  for line in "\${(@f)$(command taskstore __complete -- "\${(@)words[1,CURRENT]}" 2>/dev/null)}"; do
    [[ -z $line ]] && continue
    if [[ $line == *$'\\t'* ]]; then
      candidates+=("\${\${line%%$'\\t'*}//:/\\\\:}:\${line#*$'\\t'}")
    else
      candidates+=("\${line//:/\\\\:}")
    fi
  done
  _describe -t taskstore 'taskstore' candidates
}
if [[ \${zsh_eval_context[-1]} == loadautofunc ]]; then
  _taskstore "$@"
else
  compdef _taskstore taskstore
fi
`;

const FISH = `# taskstore completion for fish: taskstore completion fish > ~/.config/fish/completions/taskstore.fish
function __taskstore_complete
    set -l tokens (commandline -opc)
    set -l current (commandline -ct)
    command taskstore __complete -- $tokens "$current" 2>/dev/null
end
complete -c taskstore -f -a '(__taskstore_complete)'
`;

const SCRIPTS: Record<(typeof SHELLS)[number], string> = { bash: BASH, zsh: ZSH, fish: FISH };
