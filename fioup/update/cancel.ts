/**
 * Cancels the pending update if its apps have not been started: anything
 * already installed is undone by restoring the previous target's apps.
 * Fetched blobs stay in the store (pruned by the next completed update).
 *
 * @module
 */
import type { UpdateRow } from "../db.ts";
import type { UpdateContext } from "./context.ts";
import { eventFor } from "./_events.ts";
import { NoUpdateInProgressError } from "./check-step.ts";
import { currentTarget } from "./current-target.ts";
import { tryPlanOf } from "./plan.ts";
import { restorePrevious } from "./restore.ts";
import { forgetTouched, savedTouched } from "./touched.ts";
import { cancellable, InvalidStateError } from "./states.ts";

export async function cancelUpdate(ctx: UpdateContext): Promise<UpdateRow> {
  const u = ctx.db.pendingUpdate();
  if (!u) throw new NoUpdateInProgressError("cancel");
  if (!cancellable(u.state)) throw new InvalidStateError("cancel (the new apps were started)", u.state);
  ctx.db.setState(u.id, "cancelling");
  let details: Record<string, unknown> = { canceled: true };
  if (u.state === "installing" || u.state === "installed") {
    // An unreadable plan (another fioup's format) must not block a cancel: then restore every app.
    const t = savedTouched(ctx, u);
    const names = t ? [...t.changed, ...t.removed] : (tryPlanOf(u)?.apps.map((a) => a.name) ?? (await ctx.runtime.installedApps()).map((a) => a.name));
    const r = await restorePrevious(ctx, names, currentTarget(ctx.cfg, ctx.db));
    await ctx.runtime.discardStaged(tryPlanOf(u)?.apps.map((a) => a.name) ?? names).catch(() => {});
    details = { ...details, restoredTo: r.restoredTo ?? null, restoreOk: r.ok, ...(r.error ? { restoreError: r.error } : {}) };
  }
  forgetTouched(ctx, u);
  ctx.db.setState(u.id, "canceled", {
    error: "canceled by the user",
    events: [eventFor(u, "EcuInstallationCompleted", { success: false, details })],
  });
  return ctx.db.getUpdate(u.id)!;
}
