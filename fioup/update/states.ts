/**
 * The states an update goes through (docs/formats.md), in order. A step compares the
 * saved state with `reached()` to know whether its work is already done.
 *
 * @module
 */
export const UPDATE_STATES = [
  "created",
  "initializing",
  "initialized",
  "fetching",
  "fetched",
  "installing",
  "installed",
  "starting",
  "started",
  "completing",
  "completed",
] as const;
export type UpdateState = (typeof UPDATE_STATES)[number] | "failed" | "cancelling" | "canceled";

/** True when `state` is at or past `goal` on the normal path. */
export function reached(state: UpdateState, goal: (typeof UPDATE_STATES)[number]): boolean {
  const i = UPDATE_STATES.indexOf(state as (typeof UPDATE_STATES)[number]);
  return i >= 0 && i >= UPDATE_STATES.indexOf(goal);
}

/** True when the update is over: completed, failed or canceled. Nothing resumes it. */
export function ended(state: UpdateState): boolean {
  return state === "completed" || state === "failed" || state === "canceled";
}

/**
 * The command that takes an unfinished update in `state` one step on, for messages: someone who
 * ran `fioup start` on a fetched update learns to run `fioup install`, not only that it is fetched.
 * A cancel cut short (`cancelling`) is finished by `fioup cancel` (or by `fioup update`, before
 * anything else: ./init-step.ts).
 */
export function nextCommand(state: UpdateState): string | undefined {
  if (state === "cancelling") return "fioup cancel";
  if (!UPDATE_STATES.includes(state as (typeof UPDATE_STATES)[number]) || state === "completed") return undefined;
  if (!reached(state, "fetched")) return "fioup fetch";
  if (!reached(state, "installed")) return "fioup install";
  return "fioup start";
}

/**
 * Whether `fioup cancel` can still drop an update in `state`: only while its new apps have not
 * been started (`cancelling`, a cancel cut short, too: the cancel finishes it). From `starting` on, the old apps may already be gone and the new ones have run
 * (volumes migrated, ...); the way back is then an update to the older version. Every message
 * that offers a cancel, and the cancel itself, asks this.
 */
export function cancellable(state: UpdateState): boolean {
  return !reached(state, "starting") && state !== "failed" && state !== "canceled";
}

export class InvalidStateError extends Error {
  override name = "InvalidStateError";
  /** `what`: the update the action met, when it is not the one the user asked for (default "the update"). */
  constructor(action: string, state: UpdateState | "none", what = "the update") {
    const next = state === "none" ? undefined : nextCommand(state);
    const cancel = next && state !== "cancelling" && cancellable(state as UpdateState) ? " or 'fioup cancel' to drop it" : "";
    const then = state === "cancelling" ? " to finish canceling it ('fioup update' finishes it too)" : `${cancel} ('fioup update' runs every remaining step)`;
    super(`Cannot ${action}: ${what} is ${state === "none" ? "not started" : state}${next ? `; run '${next}' next${then}` : ""}`);
  }
}

/** The steps of an update, by the one name each has in code, progress lines and the database. */
export type StepName = "check" | "resume" | "init" | "fetch" | "hold" | "stop" | "install" | "start" | "complete";

/**
 * Ctrl-C or SIGTERM stopped the steps. Whatever a step was doing when the signal came
 * ("Cannot GET ...: interrupted") is not the news: the update is saved, and how to go on is.
 * Exit 130, as a shell reports a command Ctrl-C stopped.
 */
export class InterruptedError extends Error {
  override name = "InterruptedError";
}

/**
 * Where an update a signal stopped (Ctrl-C, SIGTERM) stands, for the line that says so:
 * saved at a state the next run resumes from, or already over.
 */
export function stoppedAt(u: { toTarget: string; version: string; state: UpdateState }): { text: string; resumable: boolean } {
  const over = ended(u.state);
  return { text: `the update to ${u.toTarget} (version ${u.version}) ${over ? `ended ${u.state}` : `is saved (${u.state})`}`, resumable: !over };
}

/**
 * The line an update command a signal stopped ends with: where the update stands, the command
 * (`action`) that resumes it, and `fioup cancel` only while cancel can still drop it. `stopped`:
 * the apps the update stopped that do not run now (a Ctrl-C after install stopped them), which
 * stay down until one of those commands runs: someone at a terminal expects Ctrl-C to leave the
 * old version running.
 */
export function interruptedMessage(u: { toTarget: string; version: string; state: UpdateState }, action: string, stopped: string[] = []): string {
  const at = stoppedAt(u);
  if (!at.resumable) return `Interrupted: ${at.text}`;
  if (u.state === "cancelling") return `Interrupted: ${at.text}; 'fioup cancel' finishes the cancel ('fioup ${action}' too)`;
  const cancel = cancellable(u.state);
  const down = stopped.length ? `; ${stopped.join(", ")} ${stopped.length === 1 ? "is" : "are"} stopped until ${cancel ? "one of them runs" : "it runs"}` : "";
  return `Interrupted: ${at.text}; 'fioup ${action}' resumes it${cancel ? ", 'fioup cancel' drops it" : ""}${down}`;
}
