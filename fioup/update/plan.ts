/**
 * The saved update plan: what the init step resolved (apps and blobs), stored
 * with the update so later steps and later runs (after a crash, a reboot, or
 * an upgrade of fioup) work from the same list. Every reader goes through
 * {@link planOf}, which checks the shape and the format version.
 *
 * Format history: 1 = `{ format: 1, apps, blobs, resolveBytes }`. Plans saved
 * before the format field existed have the same shape and are read as 1.
 *
 * @module
 */
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { ResolvedApps } from "../../lib/device/resolve.ts";
import { describeSchemaProblem } from "../../lib/api/schema-problem.ts";

/** The plan format this fioup writes and reads. Bump it when the shape changes, and read older ones here. */
export const PLAN_FORMAT = 1;

export const UpdatePlan = Type.Composite([Type.Object({ format: Type.Literal(PLAN_FORMAT) }), ResolvedApps]);
export type UpdatePlan = Static<typeof UpdatePlan>;

/** The update's saved plan is missing, from another fioup version, or damaged. */
export class PlanFormatError extends Error {
  override name = "PlanFormatError";
  constructor(updateId: string, why: string) {
    super(`Cannot resume update ${updateId}: ${why}; cancel it (fioup cancel) and update again`);
  }
}

/** The plan to save for what init resolved. */
export function newPlan(resolved: ResolvedApps): UpdatePlan {
  return { format: PLAN_FORMAT, apps: resolved.apps, blobs: resolved.blobs, resolveBytes: resolved.resolveBytes };
}

/** What planOf reads of an update row (fioup/db.ts UpdateRow): its id and the plan as stored. */
export interface SavedUpdate {
  id: string;
  plan: unknown;
}

/**
 * The checked plan of an update that passed init.
 *
 * @throws {PlanFormatError} If there is no plan, it has another format, or it does not match the format's shape.
 */
export function planOf(u: SavedUpdate): UpdatePlan {
  const raw = u.plan;
  if (raw === null || typeof raw !== "object") throw new PlanFormatError(u.id, "it has no saved plan");
  const format = (raw as { format?: unknown }).format ?? PLAN_FORMAT; // plans from before the field: same shape as 1
  if (format !== PLAN_FORMAT) throw new PlanFormatError(u.id, `its saved plan has format ${JSON.stringify(format)} and this fioup reads format ${PLAN_FORMAT}`);
  const plan = { ...raw, format };
  if (!Value.Check(UpdatePlan, plan)) {
    throw new PlanFormatError(u.id, `its saved plan is damaged (${describeSchemaProblem(UpdatePlan, plan, "the plan")})`);
  }
  return plan;
}

/** Like {@link planOf}, but returns `undefined` instead of throwing. */
export function tryPlanOf(u: SavedUpdate): UpdatePlan | undefined {
  try {
    return planOf(u);
  } catch {
    return undefined;
  }
}
