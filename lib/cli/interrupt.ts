/**
 * Ctrl-C or SIGTERM (a cancelled CI job) during a command that writes: the process ends there,
 * without running the `finally` blocks that would clean up, so the command cleans up in the
 * signal's handler instead (synchronously: nothing runs after it), says what it left, and exits
 * 130 (SIGINT) or 143 (SIGTERM), as shells count a death by those signals. One shape for
 * `gateway publish`, `gateway export` and `preload`: the line `<program>: stopped by SIGINT; <what is left>`.
 *
 * @module
 */

/** Says what a stopped command left and exits 130 (SIGINT) or 143 (SIGTERM). */
export function exitInterrupted(program: string, signal: NodeJS.Signals, left: string): never {
  process.stderr.write(`${program}: stopped by ${signal}; ${left}\n`);
  process.exit(signal === "SIGINT" ? 130 : 143);
}

/**
 * Until the returned function is called (in the command's `finally`), a SIGINT or SIGTERM runs
 * `cleanUp`, which returns what is left for {@link exitInterrupted} to say, or undefined to
 * stop later itself (a step that must not be cut short: it calls exitInterrupted when done).
 * Only the first signal counts.
 *
 * @example
 * ```ts
 * const release = exitOnSignal("gateway export", () => (rmSync(work, { recursive: true, force: true }), "nothing was written"));
 * try { ... } finally { release(); }
 * ```
 */
export function exitOnSignal(program: string, cleanUp: (signal: NodeJS.Signals) => string | undefined): () => void {
  let seen = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (seen) return;
    seen = true;
    const left = cleanUp(signal);
    if (left !== undefined) exitInterrupted(program, signal, left);
  };
  process.on("SIGINT", onSignal).on("SIGTERM", onSignal);
  return () => void process.off("SIGINT", onSignal).off("SIGTERM", onSignal);
}
