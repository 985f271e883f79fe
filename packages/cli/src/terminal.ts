import stringWidth from "string-width";
import type { Context } from "./command.js";

/**
 * What the terminal can show, decided once per command from the environment and stdout: colours,
 * Unicode drawing characters, and how wide a line may be. Human output only: `--json` never
 * changes with it.
 */
export interface Look {
  /** Status colours (SGR sequences made here, never from task data). */
  color: boolean;
  /** Unicode marks, tree lines and bars; false: ASCII ones. */
  unicode: boolean;
  /** Columns a line must fit in; undefined when there is no limit (stdout is not a terminal). */
  columns: number | undefined;
  /** The moment relative times count from. */
  now: number;
}

/** Output for a file or a pipe: no colour, Unicode, no width limit. */
export function plainLook(now = Date.now()): Look {
  return { color: false, unicode: true, columns: undefined, now };
}

/**
 * The look for this command's stdout:
 * - colour: `FORCE_COLOR` set and not `0`/`false` turns it on, `FORCE_COLOR=0` off (as in Node and
 *   most tools, it wins over `NO_COLOR`); else a non-empty `NO_COLOR` turns it off; else it is on
 *   when stdout is a terminal and `TERM` is not `dumb`.
 * - Unicode: off with `ascii`; else from the locale (`LC_ALL`, else `LC_CTYPE`, else `LANG`): on
 *   when it names UTF-8, off for any other (`C`, `POSIX`, `en_US.ISO-8859-1`); on when none is set.
 * - width: `COLUMNS` when it is a positive number, else the terminal's width when stdout is one.
 */
export function lookOf(ctx: Pick<Context, "env" | "stdout">, options: { ascii?: boolean } = {}): Look {
  const { env, stdout } = ctx;
  const force = env.FORCE_COLOR;
  const color =
    force !== undefined
      ? force !== "0" && force.toLowerCase() !== "false"
      : env.NO_COLOR !== undefined && env.NO_COLOR !== ""
        ? false
        : stdout.isTTY === true && env.TERM !== "dumb";
  const locale = env.LC_ALL || env.LC_CTYPE || env.LANG || "";
  const unicode = options.ascii !== true && (locale === "" || /utf-?8/i.test(locale));
  const fromEnv = Number(env.COLUMNS);
  const columns =
    Number.isInteger(fromEnv) && fromEnv > 0
      ? fromEnv
      : stdout.isTTY === true && typeof stdout.columns === "number" && stdout.columns > 0
        ? stdout.columns
        : undefined;
  return { color, unicode, columns, now: Date.now() };
}

const SGR = {
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  cyan: [36, 39],
  gray: [90, 39],
  dim: [2, 22],
} as const;

export type Colour = keyof typeof SGR;

/** `text` in `colour` when the look has colours. `text` must be escaped already (see text.ts). */
export function paint(look: Look, colour: Colour | undefined, text: string): string {
  if (!look.color || colour === undefined || text === "") return text;
  const [open, close] = SGR[colour];
  return `\x1b[${open}m${text}\x1b[${close}m`;
}

/** The columns `text` takes on a terminal (wide CJK characters and emoji count two). */
export function widthOf(text: string): number {
  return stringWidth(text);
}

const segmenter = new Intl.Segmenter();

/** `text` cut to `max` columns, ending in an ellipsis when cut; never splits a character. */
export function truncate(look: Look, text: string, max: number): string {
  if (widthOf(text) <= max) return text;
  const ellipsis = look.unicode ? "…" : "...";
  const room = max - widthOf(ellipsis);
  if (room <= 0) return ellipsis.slice(0, Math.max(0, max));
  let out = "";
  let used = 0;
  for (const { segment } of segmenter.segment(text)) {
    const w = widthOf(segment);
    if (used + w > room) break;
    out += segment;
    used += w;
  }
  return out.trimEnd() + ellipsis;
}

/** `3m ago`: how long before `look.now` the moment `ms` was; an old one as its date. */
export function relativeTime(look: Look, ms: unknown): string {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "";
  const seconds = Math.floor((look.now - ms) / 1000);
  if (seconds < 1) return "just now";
  if (seconds < 60) return `${seconds}s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ago`;
  const days = Math.floor(hours / 24);
  if (days < 60) return `${days}d ago`;
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString().slice(0, 10);
}
