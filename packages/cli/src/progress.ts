import cliProgress from "cli-progress";
import type { Context } from "./command.js";
import { lookOf } from "./terminal.js";

/** A progress bar for long work: `tick(done)` as it goes, `done()` at the end. */
export interface Progress {
  tick(done: number): void;
  done(): void;
}

const NONE: Progress = { tick() {}, done() {} };

/**
 * A bar on stderr with the count, the rate and the time left (cli-progress), redrawn in place;
 * nothing at all when stderr is not a terminal, so logs and pipes stay clean. ASCII where the
 * locale is not UTF-8 (see terminal.ts).
 */
export function progressBar(ctx: Context, label: string, total: number, unit = "tasks"): Progress {
  if (ctx.stderr.isTTY !== true) return NONE;
  const look = lookOf({ env: ctx.env, stdout: ctx.stderr });
  const started = Date.now();
  const bar = new cliProgress.SingleBar(
    {
      stream: ctx.stderr as NodeJS.WriteStream,
      format: `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_formatted}`,
      barsize: 24,
      hideCursor: false, // a command killed while drawing must not leave the cursor hidden
      clearOnComplete: false,
      etaBuffer: 20,
    },
    look.unicode ? cliProgress.Presets.shades_classic : cliProgress.Presets.legacy,
  );
  const rate = (done: number) => {
    const seconds = (Date.now() - started) / 1000;
    return seconds > 0 ? Math.round(done / seconds) : 0;
  };
  bar.start(total, 0, { rate: 0 });
  return {
    tick(done) {
      bar.update(done, { rate: rate(done) });
    },
    done() {
      bar.stop();
    },
  };
}
