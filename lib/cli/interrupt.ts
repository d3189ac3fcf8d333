/**
 * Ctrl-C or SIGTERM (a cancelled CI job) during a command that writes: the process ends there,
 * without running the `finally` blocks that would clean up, so the command cleans up in the
 * signal's handler instead (synchronously: nothing runs after it), says what it left, and exits
 * 130 (SIGINT) or 143 (SIGTERM), as shells count a death by those signals. One shape for
 * `gateway publish`, `gateway export`, `gateway backup`, `gateway restore` and `preload`: the line
 * `<program>: stopped by SIGINT; <what is left>`.
 *
 * The tools a command runs (a `docker build`, tar, mkfs) get the signal only when it came from a
 * terminal's process group; a SIGTERM sent to the command alone would leave them writing into a
 * folder it removes. So a command registers them ({@link stopsWithCommand}) and they are ended
 * first, before its clean-up.
 *
 * A command that can stop at a safe point of its own (an update between steps, the daemon, the
 * agent, a watch, a server) is not ended in the handler: the signal aborts an AbortSignal it
 * runs with ({@link abortOnStopSignals}), and its `finally` blocks run as usual.
 *
 * @module
 */

/** Child processes that end with the command (see the module comment). */
const children = new Set<{ kill(signal?: NodeJS.Signals): void }>();

/** Registers `proc` to be ended (SIGTERM) if the command is stopped while it runs; returns it. */
export function stopsWithCommand<P extends { kill(signal?: NodeJS.Signals): void; exited: Promise<unknown> }>(proc: P): P {
  children.add(proc);
  void proc.exited.finally(() => children.delete(proc));
  return proc;
}

const endChildren = () => {
  for (const p of children) p.kill("SIGTERM");
};

/** Says what a stopped command left and exits 130 (SIGINT) or 143 (SIGTERM). */
export function exitInterrupted(program: string, signal: NodeJS.Signals, left: string): never {
  endChildren();
  process.exit(sayInterrupted(program, signal, left));
}

/**
 * Says what a stopped command left and returns 130 (SIGINT) or 143 (SIGTERM), for a command that
 * finished a step it would not cut short and has printed its result: it returns the code, so that
 * output is written before the process exits (lib/cli/command.ts exitWhenWritten).
 */
export function sayInterrupted(program: string, signal: NodeJS.Signals, left: string): number {
  process.stderr.write(`${program}: stopped by ${signal}; ${left}\n`);
  return signal === "SIGINT" ? 130 : 143;
}

/**
 * Until the returned function is called (in the command's `finally`), a SIGINT or SIGTERM ends
 * the registered child processes, then runs `cleanUp`, which returns what is left for {@link exitInterrupted} to say, or undefined to
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
    endChildren();
    const left = cleanUp(signal);
    if (left !== undefined) exitInterrupted(program, signal, left);
  };
  process.on("SIGINT", onSignal).on("SIGTERM", onSignal);
  return () => void process.off("SIGINT", onSignal).off("SIGTERM", onSignal);
}

/** What {@link abortOnStopSignals} returns. */
export interface StopSignals {
  /** Aborted, with the reason given, on the first SIGTERM or SIGINT. */
  readonly signal: AbortSignal;
  /** The signal that came first, once one came. */
  readonly received: NodeJS.Signals | undefined;
  /** Removes the handlers (in the command's `finally`); a signal then takes its default action again. */
  release(): void;
}

/**
 * The other way a command stops: a long-running one (an update, the daemon, the agent, a watch,
 * `gateway serve`) stops gracefully at its next safe point rather than exiting in the handler.
 * The first SIGTERM or SIGINT aborts the returned signal with `reason` (an Error of that message).
 * `again` says what a later one does: `"ignored"` (the daemon: systemd's SIGTERM is answered
 * once, its SIGKILL ends a stop that hangs) or `"ends"` (an update command: the same signal again
 * takes its default action and ends the process, the way out of a step that will not stop).
 *
 * @example
 * ```ts
 * const stop = abortOnStopSignals("stopped", "ignored");
 * try { await watch({ signal: stop.signal }); } finally { stop.release(); }
 * ```
 */
export function abortOnStopSignals(reason: string, again: "ignored" | "ends"): StopSignals {
  const ac = new AbortController();
  let received: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    received ??= signal;
    ac.abort(new Error(reason));
  };
  // "ends": each signal's handler is there for its first arrival only (process.once).
  if (again === "ends") process.once("SIGTERM", onSignal).once("SIGINT", onSignal);
  else process.on("SIGTERM", onSignal).on("SIGINT", onSignal);
  return {
    signal: ac.signal,
    get received() {
      return received;
    },
    release: () => void process.off("SIGTERM", onSignal).off("SIGINT", onSignal),
  };
}
