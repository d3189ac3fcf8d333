/**
 * After a failed install or start: mark the target bad (never retried unless
 * named; not when the cause was the device's own trouble: a full disk, a Docker engine that does
 * not answer, a blob of its store damaged since the fetch), restore the previous target at once, and report
 * EcuInstallationCompleted{success:false}.
 *
 * A rollback is saved before it restores anything (with why, and in which step), and ends with the
 * update `failed`. One cut short in between (a power cut, SIGKILL, a reboot whose stop outlasted
 * the unit's timeout, Ctrl-C) leaves the update `installing` or `starting` with that record: the
 * next run's install or start step finishes the rollback ({@link finishInterruptedRollback})
 * instead of resuming the update, which would install and start the failed target again.
 *
 * @module
 */
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { faultPoint } from "../fault.ts";
import { updateKey, type UpdateRow } from "../db.ts";
import type { UpdateContext } from "./context.ts";
import { eventFor } from "./_events.ts";
import { currentTarget } from "./current-target.ts";
import { planOf } from "./plan.ts";
import { restorePrevious, type RestoreResult } from "./restore.ts";
import { savedTouched } from "./touched.ts";

/**
 * Failures that are the device's, not the target's, in the words of the OS, the engine, SQLite and
 * docker-compose: the disk (or Docker's) was full, or the Docker engine did not answer (dockerd
 * not up yet after a boot, stopped, its socket elsewhere). The same target works once that is
 * fixed, so it is tried again.
 */
const DEVICE_TROUBLE = /ENOSPC|no space left on device|database or disk is full|Cannot reach the Docker Engine|Cannot connect to the Docker daemon/i;

type Phase = "install" | "start";
interface RollbackOptions {
  appsTouched?: boolean;
  appFailed?: boolean;
}
/** A rollback under way, saved before it restores anything; dropped with the update's other records when it ends (DeviceDb.setState). */
interface SavedRollback extends RollbackOptions {
  phase: Phase;
  error: string;
}
const rollbackKey = (u: UpdateRow) => updateKey("rollback", u.id);

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
  phase: Phase,
  error: string,
  opts: RollbackOptions = {},
): Promise<RestoreResult> {
  const plan = planOf(u);
  ctx.hooks.onInfo?.(`${phase === "install" ? "Install" : "Start"} of ${u.toTarget} failed: ${error}; rolling back`);
  // Restore first, write the outcome after: the failure may be a full disk that also refuses
  // database writes, and the previous target must come back whatever the bookkeeping manages.
  // Only this small record goes first, when the disk takes it, so that a rollback cut short is
  // finished by the next run rather than taken for an update to resume.
  try {
    if (!ctx.db.get(rollbackKey(u))) ctx.db.set(rollbackKey(u), { phase, error, ...opts } satisfies SavedRollback);
  } catch {
    // a full disk: restore all the same
  }
  faultPoint("rolling-back");
  const prev = currentTarget(ctx.cfg, ctx.db);
  // The apps this update touched (all of them if it had not decided yet).
  const t = savedTouched(ctx, u);
  const touched = t ? [...t.changed, ...t.removed] : plan.apps.map((a) => a.name);
  const r = opts.appsTouched === false ? { restoredTo: prev?.name, ok: true } : await restorePrevious(ctx, touched, prev);
  // Stopped half-way (Ctrl-C, SIGTERM): not a failed rollback to record, but one to finish. The
  // update stays as it was, with its saved rollback, for the next run.
  if (!r.ok && ctx.signal?.aborted) throw ctx.signal.reason;
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
  return r;
}

/** How a failed update's message ends: rolled back, or the rollback that failed too (its apps may be down). */
export function rollbackOutcome(r: RestoreResult | undefined): string {
  if (!r || r.ok) return "rolled back to the previous target";
  return `the rollback to ${r.restoredTo ?? "no apps"} failed too: ${r.error ?? "not every app runs"}`;
}

/**
 * Finishes a rollback of `u` that was cut short (see the module comment): restores the previous
 * target's apps again, marks the target bad as the rollback would have, and fails the update.
 * Returns what failed, for the step to throw as it did then; undefined when no rollback was under way.
 */
export async function finishInterruptedRollback(ctx: UpdateContext, u: UpdateRow): Promise<(SavedRollback & { restore: RestoreResult }) | undefined> {
  const saved = ctx.db.get<SavedRollback>(rollbackKey(u));
  if (!saved) return undefined;
  ctx.hooks.onInfo?.(`Finishing the interrupted rollback of the update to ${u.toTarget} (version ${u.version}): its ${saved.phase} had failed`);
  const { phase, error, ...opts } = saved;
  return { ...saved, restore: await rollback(ctx, u, phase, error, opts) };
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
