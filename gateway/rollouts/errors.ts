/**
 * Errors of the rollout service; the admin app's one error handler maps them to HTTP answers
 * (not found 404, wrong state 409, invalid request 400).
 *
 * @module
 */

export class RolloutNotFoundError extends Error {
  override name = "RolloutNotFoundError";
  constructor(id: string) {
    super(`Rollout "${id}" not found`);
  }
}

/** The action does not fit the rollout's state (resume a completed rollout, advance past the last wave...). */
export class RolloutStateError extends Error {
  override name = "RolloutStateError";
}

/** A rollout request that cannot be carried out: bad waves, an empty audience, an unknown group... */
export class InvalidRolloutError extends Error {
  override name = "InvalidRolloutError";
}
