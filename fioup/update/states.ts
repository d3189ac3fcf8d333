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

export class InvalidStateError extends Error {
  override name = "InvalidStateError";
  constructor(action: string, state: UpdateState | "none") {
    super(`Cannot ${action}: the update is ${state === "none" ? "not started" : state}`);
  }
}

/** The steps of an update, by the one name each has in code, progress lines and the database. */
export type StepName = "check" | "resume" | "init" | "fetch" | "hold" | "stop" | "install" | "start" | "complete";
