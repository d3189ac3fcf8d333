/**
 * Whether a rollout keeps the version a bundle is exported for from some devices. Export reads
 * the main chain (an API token always does), but each device verifies its own signed view
 * (docs/signed-views.md): a device the rollout has not released the version to was shown
 * metadata without it, and keeps that view when the bundle's copy has the same version, so it
 * refuses the bundle. The operator hears it at export, not from the device. Which rollout holds a
 * version, and the words for it, are lib/api/rollout-hold.ts's (preload says the same).
 *
 * @module
 */
import type { AdminClient } from "../../lib/api/admin-client.ts";
import { holdText, readHoldingRollouts } from "../../lib/api/rollout-hold.ts";

/**
 * A warning line if the newest rollout of `version` still gates devices (any state but completed:
 * a cancelled one keeps gating as it was), else undefined; also undefined when the gateway does
 * not answer (a publish token may not read rollouts): the warning is advice, never a refusal.
 */
export async function rolloutHoldWarning(client: AdminClient, version: string): Promise<string | undefined> {
  const r = (await readHoldingRollouts(client).catch(() => undefined))?.get(version);
  if (!r) return undefined;
  return (
    `warning: ${holdText(r)}: ` +
    "such a device refuses this bundle (exit 22) once it has checked in since, for its own signed view from the gateway does not offer the version (docs/offline.md, \"Rollouts and signed views\")"
  );
}
