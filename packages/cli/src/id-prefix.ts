import type { StoredTask, TaskManager } from "@taskstore/core";

/** The shortest prefix that may stand for an id (git's rule): shorter ones must be whole ids. */
export const MIN_PREFIX = 4;

/** How many candidates an ambiguous prefix's message names. */
const LISTED = 10;

/** A prefix that more than one task's id starts with. Exit code 13. */
export class AmbiguousIdError extends Error {
  readonly code = "AMBIGUOUS_ID";
  constructor(
    readonly prefix: string,
    /** Every id that starts with the prefix. */
    readonly candidates: string[],
    titles: (string | undefined)[],
  ) {
    const named = candidates.slice(0, LISTED).map((id, i) => (titles[i] ? `${id} (${titles[i]})` : id));
    const more = candidates.length > LISTED ? `, and ${candidates.length - LISTED} more` : "";
    super(`the id prefix "${prefix}" is ambiguous: it starts ${candidates.length} ids: ${named.join(", ")}${more}`);
    this.name = "AmbiguousIdError";
  }
}

/**
 * The id `given` names among `tasks`: an id itself, else the one id it is a prefix of (at least
 * `MIN_PREFIX` characters; matched as typed, else ignoring case, as ULIDs are case-insensitive).
 * Nothing matching gives `given` back, for the caller's lookup to report as not found; more than
 * one match throws `AmbiguousIdError`.
 */
export function matchId(tasks: Iterable<StoredTask>, given: string): string {
  const list = [...tasks];
  const ids = list.map((task) => (typeof task.id === "string" ? task.id : String(task.id)));
  if (ids.includes(given) || given.length < MIN_PREFIX) return given;
  let hits = list.filter((_, i) => (ids[i] as string).startsWith(given));
  if (hits.length === 0) {
    const lower = given.toLowerCase();
    hits = list.filter((_, i) => (ids[i] as string).toLowerCase().startsWith(lower));
  }
  if (hits.length === 1) return String((hits[0] as StoredTask).id);
  if (hits.length === 0) return given;
  throw new AmbiguousIdError(
    given,
    hits.map((task) => String(task.id)),
    hits.map((task) => (typeof task.title === "string" ? task.title : undefined)),
  );
}

/** `matchId` against a loaded manager: an exact id costs one lookup, a prefix a look at every task. */
export function resolveId(manager: TaskManager, given: string): string {
  if (manager.findById(given)) return given;
  return matchId(manager.list(), given);
}
