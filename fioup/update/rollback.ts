/**
 * After a failed install or start: mark the target bad (never retried unless
 * named; not when the cause was the device's own trouble: a full disk, a Docker engine that does
 * not answer, a blob of its store damaged since the fetch), restore the previous target at once, and report
 * EcuInstallationCompleted{success:false}.
 *
 * @module
 */
import { DeviceBlobStore } from "../../lib/device/store.ts";
import type { UpdateRow } from "../db.ts";
import type { UpdateContext } from "./context.ts";
import { eventFor } from "./_events.ts";
import { currentTarget } from "./current-target.ts";
import { planOf } from "./plan.ts";
import { restorePrevious } from "./restore.ts";
import { savedTouched } from "./touched.ts";

/**
 * Failures that are the device's, not the target's, in the words of the OS, the engine, SQLite and
 * docker-compose: the disk (or Docker's) was full, or the Docker engine did not answer (dockerd
 * not up yet after a boot, stopped, its socket elsewhere). The same target works once that is
 * fixed, so it is tried again.
 */
const DEVICE_TROUBLE = /ENOSPC|no space left on device|database or disk is full|Cannot reach the Docker Engine|Cannot connect to the Docker daemon/i;

/**
 * Marks the target bad (unless the device was at fault: {@link DEVICE_TROUBLE}), restores the previous target's touched apps and fails the update.
 * With `appsTouched: false` (staging failed before any app was stopped, in this run or an
 * earlier one) the running apps are left exactly as they are. With `appFailed` an app's own
 * containers failed: the target is marked bad whatever the error quotes of the app's output
 * (an app that logs "No space left on device" and exits 1 is not the device's full disk, and
 * taken as such it was installed, failed and rolled back at every poll).
 */
export async function rollback(
  ctx: UpdateContext,
  u: UpdateRow,
  phase: "install" | "start",
  error: string,
  opts: { appsTouched?: boolean; appFailed?: boolean } = {},
): Promise<void> {
  const plan = planOf(u);
  ctx.hooks.onInfo?.(`${phase === "install" ? "Install" : "Start"} of ${u.toTarget} failed: ${error}; rolling back`);
  // Restore first, write after: the failure may be a full disk that also refuses database
  // writes, and the previous target must come back whatever the bookkeeping manages.
  const prev = currentTarget(ctx.cfg, ctx.db);
  // The apps this update touched (all of them if it had not decided yet).
  const t = savedTouched(ctx, u);
  const touched = t ? [...t.changed, ...t.removed] : plan.apps.map((a) => a.name);
  const r = opts.appsTouched === false ? { restoredTo: prev?.name, ok: true } : await restorePrevious(ctx, touched, prev);
  await ctx.runtime.discardStaged(plan.apps.map((a) => a.name)).catch(() => {});
  // A blob of the device's own store that no longer matches its digest (the disk rotted it, a
  // torn write) fails the install as bad content would: the device's trouble too. Removed, the
  // next run fetches it again.
  const damaged = phase === "install" && !opts.appFailed ? await removeDamaged(ctx, u) : [];
  if (damaged.length) ctx.hooks.onInfo?.(`Removed ${damaged.length} damaged blob(s) from the device's store (${damaged.join(", ")}): the next run fetches them again`);
  // A full disk or an absent engine is the device's trouble, not the target's: roll back, but let
  // the next run try the target again (for a full disk, the space check refuses it before any
  // download until there is room).
  if (opts.appFailed || (!DEVICE_TROUBLE.test(error) && !damaged.length)) ctx.db.markBad(u.target, `${phase} failed: ${error}`);
  if (r.ok) ctx.hooks.onInfo?.(`Rolled back to ${r.restoredTo ?? "no apps"}`);
  else ctx.hooks.onInfo?.(`Rollback to ${r.restoredTo ?? "no apps"} failed: ${r.error}`);
  ctx.db.setState(u.id, "failed", {
    error: `${phase} failed: ${error}`,
    events: [
      eventFor(u, "EcuInstallationCompleted", {
        success: false,
        details: { phase, error, rolledBackTo: r.restoredTo ?? null, rollbackOk: r.ok, ...(r.error ? { rollbackError: r.error } : {}), ...(damaged.length ? { damagedBlobs: damaged } : {}) },
      }),
    ],
  });
}

/** The update's blobs whose stored copy no longer matches its digest, each removed from the store. */
async function removeDamaged(ctx: UpdateContext, u: UpdateRow): Promise<string[]> {
  const store = new DeviceBlobStore(ctx.cfg.resetAppsRoot);
  const damaged: string[] = [];
  for (const digest of new Set(planOf(u).blobs.map((b) => b.digest))) {
    if (await store.removeIfDamaged(digest).catch(() => false)) damaged.push(digest);
  }
  return damaged;
}
