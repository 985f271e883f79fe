/** A command line the CLI cannot run: an unknown verb or option, a missing argument, a bad value. Exit code 2. */
export class UsageError extends Error {
  readonly code = "USAGE";
  /** The verb whose help to point at, if any. */
  readonly verb: string | undefined;
  constructor(message: string, verb?: string) {
    super(message);
    this.name = "UsageError";
    this.verb = verb;
  }
}

/** `copy` refused a target that already holds tasks (no `--force` or `--merge`). Exit code 12. */
export class TargetNotEmptyError extends Error {
  readonly code = "TARGET_NOT_EMPTY";
  constructor(message: string) {
    super(message);
    this.name = "TargetNotEmptyError";
  }
}

/** An operating system error (`ENOENT`, `EACCES`, ...) or a SQLite error: the storage failed, not taskstore. */
export function isIoError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return false;
  const errno =
    /^E[A-Z0-9]+$/.test(code) &&
    (typeof (error as { syscall?: unknown }).syscall === "string" || typeof (error as { errno?: unknown }).errno === "number");
  return errno || code.startsWith("SQLITE_");
}
