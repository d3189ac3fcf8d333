/**
 * The check step of an offline update: the TUF workflow on the bundle's metadata against the
 * device's trusted root (the same verifier, rollback and expiry checks as online; an expiry
 * grace only when `fioup.offline_expiry_grace_seconds` says so), then the online selection rules
 * applied to the one target the bundle was made for (hardware id, tags, no downgrade, bad
 * targets skipped). From there the update is an ordinary one whose content comes from the
 * bundle: the same steps, rollback and events.
 *
 * @module
 */
import { join } from "node:path";
import { clockReading, SET_THE_CLOCK } from "../../lib/net/why.ts";
import { bundleMetadataFetch, bundleRegistries, BUNDLE_METADATA_BASE_URL, BUNDLE_TUF_DIR, type Bundle } from "../../lib/bundle/index.ts";
import { TargetNotFoundError } from "../../lib/api/target.ts";
import { ExpiredMetadataError, selectTarget, targetMatchesDevice, verifyAndLoadTargets } from "../../lib/tuf/index.ts";
import { createUpdate, NoUpdateError } from "../update/check-step.ts";
import { useBundle, type UpdateContext } from "../update/context.ts";
import { currentTarget } from "../update/current-target.ts";
import { InvalidStateError } from "../update/states.ts";
import type { Step } from "../update/step.ts";

/**
 * Verifies the bundle's metadata into the device's trusted store; returns the verified targets.
 * Expired metadata is said with its expiry and the two ways forward: a bundle kept on a shelf
 * longer than the gateway's timestamps live is the usual case offline, not an attack.
 */
async function verifiedTargets(ctx: UpdateContext, bundle: Bundle) {
  try {
    return await verifyAndLoadTargets({
      metadataDir: join(ctx.cfg.storagePath, "tuf"),
      metadataBaseUrl: BUNDLE_METADATA_BASE_URL,
      fetch: bundleMetadataFetch(bundle.dir),
      expiryGraceSeconds: ctx.cfg.offlineExpiryGraceSeconds,
    });
  } catch (err) {
    if (!(err instanceof ExpiredMetadataError)) throw err;
    const file = err.file ?? "metadata";
    const expires = await Bun.file(join(bundle.dir, BUNDLE_TUF_DIR, file))
      .json()
      .then((d: { signed?: { expires?: unknown } }) => (typeof d.signed?.expires === "string" ? d.signed.expires : undefined))
      .catch(() => undefined);
    const grace = ctx.cfg.offlineExpiryGraceSeconds;
    throw new ExpiredMetadataError(
      err.file,
      `the bundle's copy expired${expires ? ` at ${expires}` : ""} by this machine's clock, which reads ${clockReading()}` +
        `${grace ? `, more than fioup.offline_expiry_grace_seconds (${grace} s) ago` : ""}: ` +
        `if that is not the time, ${SET_THE_CLOCK}; else ` +
        "export a new bundle (gateway export), or let this device take metadata that expired a while ago with fioup.offline_expiry_grace_seconds in a drop-in (docs/offline.md)",
    );
  }
}

/** The check step for `bundle` (it also makes the later steps read from the bundle). */
export function offlineCheckStep(bundle: Bundle): Step {
  return {
    name: "check",
    async run(ctx) {
      useBundle(ctx, bundle, bundleRegistries(bundle));
      const want = bundle.index.bundle.target;
      const pending = ctx.db.pendingUpdate();
      if (pending) {
        // An interrupted update finishes first, from this bundle only if it is for the same target.
        if (pending.toTarget !== want) throw new InvalidStateError(`apply the bundle for ${want}: an update to ${pending.toTarget} is in progress`, pending.state);
        ctx.updateId = pending.id;
        return;
      }
      const hwid = ctx.cfg.hardwareId;
      if (!hwid) throw new TargetNotFoundError("Cannot select a target: provision.primary_ecu_hardware_id is not set");
      const verified = await verifiedTargets(ctx, bundle);
      const entry = verified.targets[want];
      if (!entry) throw new TargetNotFoundError(`Cannot apply the bundle ${bundle.dir}: its signed targets.json (version ${verified.version}) has no target ${want}`);
      if (!targetMatchesDevice(entry, hwid, ctx.cfg.tags)) {
        throw new TargetNotFoundError(`Cannot apply the bundle ${bundle.dir}: ${want} is not for hardware id ${hwid} and tags ${ctx.cfg.tags.join(",") || "(any)"}`);
      }
      const current = currentTarget(ctx.cfg, ctx.db);
      // The online rules, restricted to the bundle's target: never older, never a bad one.
      const selected = selectTarget({ [want]: entry }, { hwid, tags: ctx.cfg.tags, currentVersion: current?.entry.custom.version, badTargets: new Set(ctx.db.badTargets()) });
      if (!selected || selected.name === current?.name) {
        const why = selected ? "the device runs it already" : ctx.db.badTargets().includes(want) ? "the device marked it bad (it failed before)" : "it is older than the running target";
        throw new NoUpdateError(`No update in the bundle: ${want} (version ${entry.custom.version}): ${why}${current ? `; running ${current.name}` : ""}`);
      }
      ctx.updateId = createUpdate(ctx, selected, false);
    },
  };
}
