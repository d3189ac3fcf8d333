/**
 * Which target versions rollouts hold back, read through the admin API, and the words for one
 * hold. A rollout gates its version by the signed view each device is shown (docs/signed-views.md):
 * a device it has not released the version to is shown metadata without it. Per version its
 * newest rollout decides, and only a completed one gates nobody: a running, paused or halted one
 * gates, and a cancelled one keeps gating as it was (docs/rollouts.md). An API token always reads
 * the main chain, which lists the version, so a tool reading with one must ask the rollouts.
 *
 * It lives in lib/ because two binaries read it and must say it alike: `gateway export` (a bundle
 * such a device refuses) and `preload` (an image whose devices would run the version outside the
 * rollout). It is mechanism, the meaning of a rollout's state in the API's terms, fixed by the
 * gateway; what to do about a hold (warn, pick another version) is each command's policy.
 *
 * @module
 */
import { AdminApiError, type AdminClient } from "./admin-client.ts";
import type { RolloutRow } from "./admin.ts";

/** How many rollouts are read, newest first: the most `GET /admin/rollouts` answers. */
const READ_LIMIT = 1000;

/**
 * The rollout that holds each version back, by `custom.version`: per version its newest rollout,
 * unless that one completed. `rollouts` newest first, as `GET /admin/rollouts` lists them.
 */
export function holdingRollouts(rollouts: readonly RolloutRow[]): Map<string, RolloutRow> {
  const newest = new Map<string, RolloutRow>();
  for (const r of rollouts) if (!newest.has(r.targetVersion)) newest.set(r.targetVersion, r);
  for (const [version, r] of newest) if (r.state === "completed") newest.delete(version);
  return newest;
}

/**
 * The gateway's holding rollouts ({@link holdingRollouts}), or undefined when the token may not
 * read rollouts (a publish token: 401 or 403).
 *
 * @throws {AdminApiError} Any other failure to read them (the caller decides whether it matters).
 */
export async function readHoldingRollouts(client: AdminClient): Promise<Map<string, RolloutRow> | undefined> {
  try {
    return holdingRollouts((await client.rollouts({ limit: READ_LIMIT })).rollouts);
  } catch (err) {
    if (err instanceof AdminApiError && (err.status === 401 || err.status === 403)) return undefined;
    throw err;
  }
}

/**
 * One hold in the words every tool says it with, e.g. `rollout 01m98... (paused, tag main, wave 2
 * of 3) holds version 4 back from the devices it has not released it to`; each tool adds what
 * the hold means for what it makes.
 */
export function holdText(r: RolloutRow): string {
  const audience = r.groupName ? `group ${r.groupName}` : `tag ${r.tag}`;
  return `rollout ${r.id} (${r.state}, ${audience}, wave ${r.wave + 1} of ${r.waves.length}) holds version ${r.targetVersion} back from the devices it has not released it to`;
}
