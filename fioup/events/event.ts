/**
 * Builds the update events the gateway accepts (eventType version 2; lib/api/device.ts), one correlation
 * id per update.
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
  return {
    id: crypto.randomUUID(),
    deviceTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    eventType: { id: type, version: 2 },
    event: {
      correlationId: s.correlationId,
      targetName: s.targetName,
      version: s.version,
      ...(extra.success !== undefined ? { success: extra.success } : {}),
      ...(extra.details !== undefined
        ? { details: (typeof extra.details === "string" ? extra.details : JSON.stringify(extra.details)).slice(0, 16000) }
        : {}),
    },
  };
}
