/**
 * Cancels the pending update if its apps have not been started: anything
 * already installed is undone by restoring the previous target's apps.
 * Fetched blobs stay in the store (pruned by the next completed update).
 *
 * A cancel is two saved states: `cancelling`, saved with the apps it must restore, then
 * `canceled` once they run again. A cancel cut short in between (a power cut, a kill) leaves the
 * update `cancelling`, the old apps possibly still stopped: the next `fioup cancel`, `fioup
 * update` or daemon cycle finishes it from what was saved (the init step calls
 * {@link finishCancel}), before anything else.
 *
 * @module
 */
import { updateKey, type UpdateRow } from "../db.ts";
import type { UpdateContext } from "./context.ts";
import { eventFor } from "./_events.ts";
import { NoUpdateInProgressError } from "./check-step.ts";
import { currentTarget } from "./current-target.ts";
import { tryPlanOf } from "./plan.ts";
import { restorePrevious } from "./restore.ts";
import { savedTouched } from "./touched.ts";
import { cancellable, InvalidStateError } from "./states.ts";

/** The kv key of the apps a cancel restores, saved with the state `cancelling` (empty: nothing was installed); dropped at `canceled`. */
const restoreKey = (u: UpdateRow) => updateKey("cancel-restores", u.id);

/** Cancels the pending update, or finishes the cancel of one left `cancelling`. */
export async function cancelUpdate(ctx: UpdateContext): Promise<UpdateRow> {
  const u = ctx.db.pendingUpdate();
  if (!u) throw new NoUpdateInProgressError("cancel");
  if (!cancellable(u.state)) throw new InvalidStateError("cancel (the new apps were started)", u.state);
  return await finishCancel(ctx, u);
}

/**
 * The apps install touched (or may have: all the plan's, or all installed, when it had not
 * decided yet or its plan is unreadable): those the cancel stops and puts back as the previous
 * target had them.
 */
async function touchedByInstall(ctx: UpdateContext, u: UpdateRow): Promise<string[]> {
  // An unreadable plan (another fioup's format) must not block a cancel: then restore every app.
  const t = savedTouched(ctx, u);
  return t ? [...t.changed, ...t.removed] : (tryPlanOf(u)?.apps.map((a) => a.name) ?? (await ctx.runtime.installedApps()).map((a) => a.name));
}

/** Whether install may have stopped or swapped apps: it reached its stop step (saved before the first stop). */
const appsTouched = (ctx: UpdateContext, u: UpdateRow) => u.state === "installed" || (u.state === "installing" && ctx.db.stepDone(u.id, "stop"));

/**
 * Cancels `u`, a cancellable update or one left `cancelling` by a cancel that was cut short,
 * and returns it canceled. The apps to restore are decided once and saved with `cancelling`, so
 * a rerun restores the same ones whatever the first run got to.
 */
export async function finishCancel(ctx: UpdateContext, u: UpdateRow): Promise<UpdateRow> {
  let restore: string[];
  const resumed = u.state === "cancelling";
  if (resumed) {
    // Left by a fioup that did not save the list: install had touched apps if it saved which.
    restore = ctx.db.get<string[]>(restoreKey(u)) ?? (savedTouched(ctx, u) || ctx.db.stepDone(u.id, "stop") ? await touchedByInstall(ctx, u) : []);
    ctx.hooks.onInfo?.(
      `Finishing the interrupted cancel of the update to ${u.toTarget} (version ${u.version})${restore.length ? `: restoring ${restore.join(", ")}` : ""}`,
    );
  } else {
    // Only once install reached its stop (./install-step.ts): before it, staging ran beside the
    // old apps, which run on untouched and are left alone, as a failed staging leaves them.
    restore = appsTouched(ctx, u) ? await touchedByInstall(ctx, u) : [];
    ctx.db.transaction(() => {
      ctx.db.set(restoreKey(u), restore);
      ctx.db.setState(u.id, "cancelling");
    });
  }
  let details: Record<string, unknown> = { canceled: true, ...(resumed ? { resumed: true } : {}) };
  if (restore.length) {
    const r = await restorePrevious(ctx, restore, currentTarget(ctx.cfg, ctx.db));
    // Stopped half-way (Ctrl-C, SIGTERM to `fioup update` or the daemon finishing it): not a
    // failed restore to record, but one to do again. The update stays `cancelling` for the next run.
    if (!r.ok && ctx.signal?.aborted) throw ctx.signal.reason;
    details = { ...details, restoredTo: r.restoredTo ?? null, restoreOk: r.ok, ...(r.error ? { restoreError: r.error } : {}) };
  }
  // Staged dirs are left by an install stopped before its stop step too (nothing to restore then).
  await ctx.runtime.discardStaged(tryPlanOf(u)?.apps.map((a) => a.name) ?? restore).catch(() => {});
  // With the update's records (what it restores, what install touched, the fetch's counts): DeviceDb.setState.
  ctx.db.setState(u.id, "canceled", {
    error: "canceled by the user",
    events: [eventFor(u, "EcuInstallationCompleted", { success: false, details })],
  });
  return ctx.db.getUpdate(u.id)!;
}
