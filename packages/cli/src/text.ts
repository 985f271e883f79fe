/**
 * Text from task data (and anything quoting it, like an error message) on its way to a terminal.
 * No control character ever gets through: C0 controls (ESC, CR, BEL, TAB, ...), DEL, C1 controls
 * (CSI U+009B, ...), the line and paragraph separators, the bidi controls and lone surrogates are
 * written as escapes (`\x1b`, `\r`, `\t`, `\x9b`, `\u2028`, `\u202e`), so a title cannot clear the
 * screen, retitle the window, move the cursor or fake a line. Only human output is escaped:
 * `--json` output keeps every string exactly.
 */

/** Whether the UTF-16 unit `c` (a code point, or half of a surrogate pair) must be escaped. */
function isUnsafe(c: number): boolean {
  if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return true;
  if (c < 0x061c) return false;
  return (
    c === 0x061c || // arabic letter mark
    c === 0x200e || // left-to-right mark
    c === 0x200f || // right-to-left mark
    c === 0x2028 || // line separator
    c === 0x2029 || // paragraph separator
    (c >= 0x202a && c <= 0x202e) || // bidi embeddings and overrides
    (c >= 0x2066 && c <= 0x2069) || // bidi isolates
    (c >= 0xd800 && c <= 0xdfff) // surrogates: checked for pairing below
  );
}

const NAMED: Record<number, string> = { 9: "\\t", 10: "\\n", 13: "\\r" };

function escapeUnit(c: number): string {
  const named = NAMED[c];
  if (named) return named;
  if (c <= 0xff) return `\\x${c.toString(16).padStart(2, "0")}`;
  return `\\u${c.toString(16).padStart(4, "0")}`;
}

/** True when nothing in `text` needs escaping (the common case, checked without building anything). */
function isClean(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    if (isUnsafe(text.charCodeAt(i))) return false;
  }
  return true;
}

/**
 * `text` with every unsafe character escaped, line breaks included: for one-line fields (a title,
 * an agent, an id, a message). Surrogate pairs (emoji) are kept; a lone surrogate is escaped.
 */
export function escapeText(text: unknown): string {
  const value = typeof text === "string" ? text : text === undefined ? "" : String(text);
  if (isClean(value)) return value;
  let out = "";
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (!isUnsafe(c)) {
      out += value[i];
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < value.length) {
      const next = value.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        out += value.slice(i, i + 2);
        i++;
        continue;
      }
    }
    out += escapeUnit(c);
  }
  return out;
}

/**
 * Multi-line text (a log entry's output, a description): each line escaped as by `escapeText`,
 * with its line breaks (`\n` or `\r\n`) kept, every line after the first starting with `indent`.
 * A lone `\r` is escaped. With a non-empty indent, no line of the text can pass for a line of
 * the output around it (a log entry, a field): those never start with the indent's whitespace.
 */
export function escapeBlock(text: unknown, indent: string): string {
  const value = typeof text === "string" ? text : text === undefined ? "" : String(text);
  return value
    .split(/\r?\n/)
    .map((line) => escapeText(line))
    .join(`\n${indent}`);
}

/** Characters JSON.stringify leaves raw that a terminal would act on (it escapes C0 controls and lone surrogates itself). */
const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * `JSON.stringify`, with every character a terminal would act on written as a `\uXXXX` escape:
 * the same value once parsed (`--json` keeps every string exactly), but safe to print even when
 * `--json` output lands on a terminal.
 */
export function jsonText(value: unknown, space?: number): string {
  return JSON.stringify(value, null, space).replace(
    JSON_UNSAFE,
    (char) => `\\u${(char.codePointAt(0) as number).toString(16).padStart(4, "0")}`,
  );
}
