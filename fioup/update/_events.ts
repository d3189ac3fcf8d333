/** Shared by the steps: an event about update `u`, to save with the step's state change (delivered later, in order). */
import type { EventTypeId } from "../../lib/api/index.ts";
import type { UpdateRow } from "../db.ts";
import { makeEvent } from "../events/event.ts";

export function eventFor(u: UpdateRow, type: EventTypeId, extra: { success?: boolean; details?: unknown } = {}) {
  return makeEvent(type, { correlationId: u.id, targetName: u.toTarget, version: u.version }, extra);
}
