/**
 * Builds the update events the gateway accepts (eventType version 2; lib/api/device.ts), one correlation
 * id per update, and the note that queued events were dropped.
 *
 * @module
 */
import type { DeviceEvent, EventTypeId } from "../../lib/api/index.ts";

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

function deviceEvent(type: string, event: DeviceEvent["event"]): DeviceEvent {
  return { id: crypto.randomUUID(), deviceTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"), eventType: { id: type, version: 2 }, event };
}

/**
 * The type of the note that the device dropped queued events (fioup/db.ts bounds its queue). Not
 * one of lib/api's EVENT_TYPES, which name update events: the gateway stores any type id.
 */
export const EVENTS_DROPPED = "EventsDropped";

/** What a note of dropped events says: how many, and the device times of the oldest and newest of them. */
export interface DroppedEvents {
  dropped: number;
  from: string;
  to: string;
}

/** The note, sent in the queue's order like any event, under its own correlation id (it belongs to no update). */
export function droppedEventsNote(d: DroppedEvents, why: string): DeviceEvent {
  return deviceEvent(EVENTS_DROPPED, { correlationId: `events-dropped-${crypto.randomUUID()}`, details: JSON.stringify({ ...d, why }) });
}
