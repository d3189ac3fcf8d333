/**
 * Rules of a rollout request beyond its schema, and the defaults of its timing settings, shared by
 * the service (which refuses a request with 400) and `gateway rollouts create` (which refuses it
 * before anything is sent, exit 2), so both say the same thing.
 *
 * @module
 */
import { formatSeconds } from "../../lib/api/duration.ts";
import { InvalidRolloutError } from "./errors.ts";

/** Defaults of a rollout request's optional settings. */
export const ROLLOUT_DEFAULTS = { soakS: 30 * 60, maxFailuresPct: 5, healthWindowS: 10 * 60, pendingTimeoutS: 60 * 60 } as const;

/**
 * A device succeeds only after every app stayed healthy for the health window after its update,
 * which it cannot finish before its wave started: a pending timeout no longer than the health
 * window fails every device of the rollout ("timeout"), however healthy.
 *
 * @throws {InvalidRolloutError} If the pending timeout is not longer than the health window.
 */
export function checkTimes(healthWindowS: number, pendingTimeoutS: number): void {
  if (pendingTimeoutS <= healthWindowS)
    throw new InvalidRolloutError(
      `Invalid pending timeout ${formatSeconds(pendingTimeoutS)}: it must be longer than the health window (${formatSeconds(healthWindowS)}), or every device times out before it can count as succeeded`,
    );
}

/**
 * The rollout gates the targets whose custom.version equals its version as a string, and
 * `gateway publish` writes versions as numbers: "0010" would gate nothing while the operator
 * believes version 10 held back.
 *
 * @throws {InvalidRolloutError} If the version has a leading zero.
 */
export function checkTargetVersion(version: string): void {
  if (/^0[0-9]/.test(version))
    throw new InvalidRolloutError(`Invalid target "${version}": a version is written without leading zeros, as published ("${version.replace(/^0+(?=[0-9])/, "")}")`);
}
