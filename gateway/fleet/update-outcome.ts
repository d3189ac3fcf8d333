/**
 * How an update and a failure read, for the dashboard (device page, timeline, overview) and the
 * CLI (`devices show`) alike, so both say the same of a device.
 *
 * An update the user cancelled on the device (`fioup cancel`) ends like a failed one,
 * EcuInstallationCompleted with success false, but its details carry `canceled: true`: it is
 * no failure of the update (rollout verdicts skip it too), so it reads "cancelled".
 *
 * @module
 */
import type { Update } from "../../lib/api/admin.ts";
import type { DeviceEvent } from "../../lib/api/index.ts";

export type UpdateOutcome = "in progress" | "succeeded" | "failed" | "cancelled";

/** An event's details as fioup's structured JSON object, if they are one. */
function detailsObject(details: string | undefined | null): Record<string, unknown> | undefined {
  if (!details) return undefined;
  try {
    const v = JSON.parse(details) as unknown;
    if (v && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {}
  return undefined;
}

/**
 * Whether an event is the end of an update the user cancelled on the device, the previous apps put
 * back: a cancel whose restore failed (`restoreOk: false`) leaves the device maybe without a working
 * app, and counts as the failure it is (the store's status rule says the same: gateway/store/_migrations.ts).
 */
export const isCancelEvent = (e: DeviceEvent) => {
  const d = e.event.success === false ? detailsObject(e.event.details) : undefined;
  return d?.canceled === true && d.restoreOk !== false;
};

/**
 * An update's outcome: in progress until it succeeded or failed; a failure whose event says the
 * user cancelled it is "cancelled".
 */
export function updateOutcome(u: Update): UpdateOutcome {
  if (u.success === undefined) return "in progress";
  if (u.success) return "succeeded";
  return u.events.some(isCancelEvent) ? "cancelled" : "failed";
}

/**
 * The human reason of a failure's details text: `phase: error` of fioup's structured details,
 * "cancelled by the user" for a cancel, else the text (cut at 300 characters).
 *
 * @example
 * ```ts
 * failureReason('{"phase":"start","error":"service \\"web\\" is unhealthy"}'); // 'start: service "web" is unhealthy'
 * ```
 */
export function failureReason(details: string | null | undefined): string {
  if (!details) return "(no reason given)";
  const v = detailsObject(details);
  if (v && typeof v.error === "string") return `${typeof v.phase === "string" ? `${v.phase}: ` : ""}${v.error}`;
  if (v?.canceled === true) return "cancelled by the user";
  return details.length > 300 ? `${details.slice(0, 300)}…` : details;
}

/** The reason an update failed: that of its last failed event, or undefined when it did not fail. */
export function updateFailure(u: Update): string | undefined {
  if (updateOutcome(u) !== "failed") return undefined;
  const e = u.events.findLast((x) => x.event.success === false);
  return e ? failureReason(e.event.details) : undefined;
}
