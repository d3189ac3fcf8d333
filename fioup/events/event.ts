/**
 * Builds the update events the gateway accepts (eventType version 2; lib/api/device.ts), one correlation
 * id per update, and the note that queued events were dropped.
 *
 * @module
 */
import type { DeviceEvent, DroppedEvents, EventTypeId } from "../../lib/api/index.ts";

export type { DroppedEvents };

export interface EventSubject {
  correlationId: string;
  targetName: string;
  version: string;
}

export function makeEvent(type: EventTypeId, s: EventSubject, extra: { success?: boolean; details?: unknown } = {}): DeviceEvent {
  return deviceEvent(type, {
    correlationId: s.correlationId,
    targetName: s.targetName,
    version: s.version,
    ...(extra.success !== undefined ? { success: extra.success } : {}),
    ...(extra.details !== undefined ? { details: (typeof extra.details === "string" ? extra.details : JSON.stringify(extra.details)).slice(0, 16000) } : {}),
  });
}

function deviceEvent(type: EventTypeId, event: DeviceEvent["event"]): DeviceEvent {
  return { id: crypto.randomUUID(), deviceTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"), eventType: { id: type, version: 2 }, event };
}

/** The type of the note that the device dropped queued events (fioup/db.ts bounds its queue; lib/api/device.ts reads it). */
export const EVENTS_DROPPED = "EventsDropped" satisfies EventTypeId;

/** The note, sent in the queue's order like any event, under its own correlation id (it belongs to no update). */
export function droppedEventsNote(d: Omit<DroppedEvents, "why">, why: string): DeviceEvent {
  return deviceEvent(EVENTS_DROPPED, { correlationId: `events-dropped-${crypto.randomUUID()}`, details: JSON.stringify({ ...d, why }) });
}
