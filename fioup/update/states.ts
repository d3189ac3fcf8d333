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

/**
 * The command that takes an unfinished update in `state` one step on, for messages: someone who
 * ran `fioup start` on a fetched update learns to run `fioup install`, not only that it is fetched.
 */
export function nextCommand(state: UpdateState): string | undefined {
  if (!UPDATE_STATES.includes(state as (typeof UPDATE_STATES)[number]) || state === "completed") return undefined;
  if (!reached(state, "fetched")) return "fioup fetch";
  if (!reached(state, "installed")) return "fioup install";
  return "fioup start";
}

/**
 * Whether `fioup cancel` can still drop an update in `state`: only while its new apps have not
 * been started. From `starting` on, the old apps may already be gone and the new ones have run
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
    const cancel = next && cancellable(state as UpdateState) ? " or 'fioup cancel' to drop it" : "";
    super(`Cannot ${action}: ${what} is ${state === "none" ? "not started" : state}${next ? `; run '${next}' next${cancel} ('fioup update' runs every remaining step)` : ""}`);
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
  const over = u.state === "completed" || u.state === "failed" || u.state === "canceled";
  return { text: `the update to ${u.toTarget} (version ${u.version}) ${over ? `ended ${u.state}` : `is saved (${u.state})`}`, resumable: !over };
}

/**
 * The line an update command a signal stopped ends with: where the update stands, the command
 * (`action`) that resumes it, and `fioup cancel` only while cancel can still drop it.
 */
export function interruptedMessage(u: { toTarget: string; version: string; state: UpdateState }, action: string): string {
  const at = stoppedAt(u);
  if (!at.resumable) return `Interrupted: ${at.text}`;
  return `Interrupted: ${at.text}; 'fioup ${action}' resumes it${cancellable(u.state) ? ", 'fioup cancel' drops it" : ""}`;
}
