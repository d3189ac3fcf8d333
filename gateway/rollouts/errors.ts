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

/**
 * The action would show the version to more devices (create, resume, advance), which needs new
 * targets metadata signed with the TUF targets key, and that key is offline (moved out of the
 * keys dir, docs/keys.md): refused before anything is committed, so the answer never says
 * "failed" about a change that was made.
 */
export class TargetsKeyOfflineError extends RolloutStateError {
  override name = "TargetsKeyOfflineError";
  constructor(action: string) {
    super(
      `Cannot ${action}: the TUF targets key is offline, and the devices it releases the version to need targets metadata signed with it; ` +
        `put the targets key file back into the gateway's tuf/keys/ (docs/keys.md, "Targets signed offline") and try again (nothing was changed)`,
    );
  }
}
