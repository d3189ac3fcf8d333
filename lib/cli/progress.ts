/**
 * The one progress line of a long transfer (a push, a multi-GB blob), for every binary: what the
 * line says is the caller's; how it is shown is here. On a terminal it is one line rewritten in
 * place (`\r\x1b[K`), at most 4 times a second; in a log (stderr not a terminal) it is a plain
 * line every 10 s, and nothing in the first 10 s, so a short transfer adds nothing to a CI log and
 * a long one is never silent there.
 *
 * @module
 */

/** A progress line: `show` it as often as there is news, `print` the lines that stay. */
export interface ProgressLine {
  /** The transfer's state now: shown if its turn has come (see the module comment), else dropped. */
  show(line: string): void;
  /** A line that stays (a step, a finished blob): the progress line is cleared first, so it starts clean. */
  print(line: string): void;
  /** Clears the line in place, if one is shown: before anything else writes to stderr, and when done. */
  clear(): void;
}

/** A progress line that also keeps long steps without bytes to count from being silent. */
export interface StepProgress extends ProgressLine {
  /**
   * Runs a long step that has no bytes to count (copying a base, mkfs): `what` is printed as it
   * starts, then every {@link HEARTBEAT_MS} the time so far (`what: 20 s so far`), in place on a
   * terminal and as a line in a log, so neither sits silent.
   */
  during<T>(what: string, work: () => Promise<T>): Promise<T>;
}

/** How often a long step without bytes to count says it is still under way. */
export const HEARTBEAT_MS = 10_000;

/** How often the line may change on a terminal, and in a log. */
export const PROGRESS_EVERY_MS = { tty: 250, log: 10_000 } as const;

/**
 * @param log Writes a whole line that stays (the command's `out.info`).
 * @param o Where and how: stderr, whether it is a terminal, and the clock (tests give their own).
 *
 * @example
 * ```ts
 * const progress = progressLine((line) => out.info(line));
 * try {
 *   await push({ onProgress: (sent) => progress.show(`pushing: ${sizeText(sent)} sent`), log: progress.print });
 * } finally {
 *   progress.clear();
 * }
 * ```
 */
export function progressLine(
  log: (line: string) => void,
  o: { write?: (s: string) => void; tty?: boolean; now?: () => number } = {},
): StepProgress {
  const write = o.write ?? ((s: string) => void process.stderr.write(s));
  const tty = o.tty ?? !!process.stderr.isTTY;
  const now = o.now ?? (() => performance.now());
  let last: number | undefined;
  let shown = false;
  const clear = () => {
    if (shown) write("\r\x1b[K");
    shown = false;
  };
  return {
    show(line) {
      const t = now();
      if (last === undefined && !tty) {
        last = t; // the first 10 s are quiet in a log: a short transfer prints nothing
        return;
      }
      if (last !== undefined && t - last < (tty ? PROGRESS_EVERY_MS.tty : PROGRESS_EVERY_MS.log)) return;
      last = t;
      if (tty) {
        write(`\r\x1b[K${line}`);
        shown = true;
      } else log(line);
    },
    print(line) {
      clear();
      log(line);
    },
    clear,
    async during(what, work) {
      clear();
      log(what);
      const t0 = now();
      const beat = setInterval(() => {
        const line = `${what}: ${Math.round((now() - t0) / 1000)} s so far`;
        if (tty) {
          write(`\r\x1b[K${line}`);
          shown = true;
        } else log(line);
      }, HEARTBEAT_MS);
      try {
        return await work();
      } finally {
        clearInterval(beat);
        clear();
      }
    },
  };
}
