import { StringDecoder } from "node:string_decoder";
import { LIMITS, type LogType, type TaskManager } from "@taskstore/core";

/**
 * A byte stream cut into lines (`\n`, with a `\r` before it dropped), decoded as UTF-8 across
 * chunk boundaries. A line longer than one log entry may hold is cut into entries of that size,
 * so a command that never prints a line break still reaches the log.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder("utf8");
  private partial = "";

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: Buffer | string): void {
    this.take(typeof chunk === "string" ? chunk : this.decoder.write(chunk));
  }

  /** The stream ended: what is left (a last line without a line break) is a line. */
  end(): void {
    this.take(this.decoder.end());
    if (this.partial !== "") this.onLine(this.partial);
    this.partial = "";
  }

  private take(text: string): void {
    if (text === "") return;
    const lines = (this.partial + text).split("\n");
    this.partial = lines.pop() as string;
    for (const line of lines) this.onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
    while (this.partial.length > LIMITS.logOutputLength) {
      this.onLine(this.partial.slice(0, LIMITS.logOutputLength));
      this.partial = this.partial.slice(LIMITS.logOutputLength);
    }
  }
}

/**
 * Appends lines to a task's log as they come, one entry a line, without one write a line: while a
 * write is in flight, new lines wait, and they all go in the next one (the repository's group
 * commit writes concurrent appends together, up to its batch size). So a chatty command on a slow
 * store makes a few large writes, not thousands of small ones. Lines waiting beyond the log cap
 * would be dropped by the cap anyway: the oldest go first, counted in `dropped`.
 */
export class LogRecorder {
  /** Lines dropped before they were written (more waiting than the log keeps). */
  dropped = 0;
  /** Lines written. */
  written = 0;
  private pending: { output: string; type: LogType }[] = [];
  private inFlight: Promise<void> | undefined;
  private failure: unknown;

  constructor(
    private readonly manager: TaskManager,
    private readonly id: string,
    private readonly options: { source?: string | undefined; maxPending?: number } = {},
  ) {}

  add(type: LogType, output: string): void {
    if (this.failure !== undefined) return;
    this.pending.push({ output, type });
    const max = this.options.maxPending ?? LIMITS.defaultLogCap;
    if (this.pending.length > max) this.dropped += this.pending.splice(0, this.pending.length - max).length;
    this.kick();
  }

  /** The first write that failed (the recorder stops at it), if any. */
  get error(): unknown {
    return this.failure;
  }

  /** Resolves when every line added so far is written; rejects with the first failure. */
  async drain(): Promise<void> {
    while (this.inFlight) await this.inFlight;
    if (this.failure !== undefined) throw this.failure;
  }

  private kick(): void {
    if (this.inFlight || this.pending.length === 0 || this.failure !== undefined) return;
    const batch = this.pending.splice(0);
    const { source } = this.options;
    this.inFlight = Promise.all(batch.map((entry) => this.manager.appendOutput(this.id, entry.output, entry.type, source))).then(
      () => {
        this.written += batch.length;
        this.inFlight = undefined;
        this.kick();
      },
      (error: unknown) => {
        this.failure ??= error;
        this.pending = [];
        this.inFlight = undefined;
      },
    );
  }
}
