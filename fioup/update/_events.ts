/** Shared by the steps: queue an update event for the current update (delivered later, in order). */
import type { EventTypeId } from "../../lib/api/index.ts";
import type { UpdateRow } from "../db.ts";
import { makeEvent } from "../events/event.ts";
import type { UpdateContext } from "./context.ts";

export function eventFor(u: UpdateRow, type: EventTypeId, extra: { success?: boolean; details?: unknown } = {}) {
  return makeEvent(type, { correlationId: u.id, targetName: u.toTarget, version: u.version }, extra);
}

export function queueEvent(ctx: UpdateContext, u: UpdateRow, type: EventTypeId, extra: { success?: boolean; details?: unknown } = {}) {
  ctx.db.enqueueEvents([eventFor(u, type, extra)]);
}
