/**
 * Which apps an update touches: those whose URI changed or that are new
 * (`changed`: staged, stopped, swapped and started), and those the target
 * drops (`removed`: stopped now, removed when the update completes). Every
 * other app keeps running, its directory untouched. Decided once, when
 * installation begins, and saved with the update, so a resumed run (after a
 * kill mid-swap) acts on the same list.
 *
 * @module
 */
import { updateKey, type UpdateRow } from "../db.ts";
import type { UpdateContext } from "./context.ts";
import { planOf } from "./plan.ts";

export interface Touched {
  changed: string[];
  removed: string[];
}

/** Dropped with the update's other records when it ends (DeviceDb.setState). */
const key = (u: UpdateRow) => updateKey("update-touched", u.id);

/** The saved list of the update, or undefined before installation began. */
export function savedTouched(ctx: UpdateContext, u: UpdateRow): Touched | undefined {
  const t = ctx.db.get<Touched>(key(u));
  return t && Array.isArray(t.changed) && Array.isArray(t.removed) ? t : undefined;
}

/** The saved list, or (at the first call) computed from what is installed and saved. */
export async function touchedApps(ctx: UpdateContext, u: UpdateRow): Promise<Touched> {
  const saved = savedTouched(ctx, u);
  if (saved) return saved;
  const plan = planOf(u);
  const installed = new Map((await ctx.runtime.installedApps()).map((a) => [a.name, a.uri]));
  const wanted = new Set(plan.apps.map((a) => a.name));
  const t: Touched = {
    changed: plan.apps.filter((a) => installed.get(a.name) !== a.uri).map((a) => a.name),
    removed: [...installed.keys()].filter((n) => !wanted.has(n)),
  };
  ctx.db.set(key(u), t);
  return t;
}
