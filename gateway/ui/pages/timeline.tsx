/* @jsxImportSource hono/jsx */
/** A device's update history as a timeline: each step of each update, bytes fetched, the error text of a failure. */
import type { Update } from "../../../lib/api/admin.ts";
import { readDroppedEvents, type DeviceEvent } from "../../../lib/api/index.ts";
import { sizeText } from "../../../lib/cli/bytes.ts";
import { isCancelEvent, updateOutcome } from "../../fleet/update-outcome.ts";

const STEP_NAMES: Record<string, [ok: string, failed: string]> = {
  EcuDownloadStarted: ["Download started", "Download failed"],
  EcuDownloadCompleted: ["Download completed", "Download failed"],
  EcuInstallationStarted: ["Installation started", "Installation failed"],
  EcuInstallationApplied: ["Installation applied", "Installation failed"],
  EcuInstallationCompleted: ["Installation completed", "Installation failed"],
};

/** An event's details: fioup sends JSON text for structured details, plain text otherwise. */
function detailsOf(e: DeviceEvent): { fields?: Record<string, unknown>; text?: string } {
  const d = e.event.details;
  if (d === undefined || d === "") return {};
  try {
    const v = JSON.parse(d) as unknown;
    if (v && typeof v === "object" && !Array.isArray(v)) return { fields: v as Record<string, unknown> };
  } catch {}
  return { text: d };
}

/** How far a device's clock may be from the gateway's before the timeline shows both. */
const CLOCK_SKEW_SHOWN_MS = 5 * 60_000;

/**
 * When a step happened, as the device dated it; when the gateway received it much later or
 * earlier (a device clock that is wrong, or an event sent from a queue after a time offline),
 * the gateway's time of receipt first, which its own clock vouches for.
 */
function When({ deviceTime, receivedAt }: { deviceTime: string; receivedAt: string | undefined }) {
  const skew = receivedAt === undefined ? 0 : Math.abs(Date.parse(deviceTime) - Date.parse(receivedAt));
  if (receivedAt === undefined || !(skew > CLOCK_SKEW_SHOWN_MS)) return <time datetime={deviceTime} class="muted">{deviceTime}</time>;
  return (
    <span class="muted">
      <time datetime={receivedAt}>{receivedAt}</time> (received; the device's clock said {deviceTime})
    </span>
  );
}

function Step({ e, receivedAt }: { e: DeviceEvent; receivedAt: string | undefined }) {
  if (isCancelEvent(e)) {
    return (
      <li data-step={e.eventType.id} data-cancelled>
        <strong>Cancelled by the user</strong> <When deviceTime={e.deviceTime} receivedAt={receivedAt} />
      </li>
    );
  }
  const failed = e.event.success === false;
  const names = STEP_NAMES[e.eventType.id] ?? [e.eventType.id, `${e.eventType.id} (failed)`];
  const { fields, text } = detailsOf(e);
  const bytes = typeof fields?.bytesFetched === "number" ? fields.bytesFetched : undefined;
  const error = failed ? (typeof fields?.error === "string" ? fields.error : text) : undefined;
  return (
    <li class={failed ? "bad" : e.event.success === true ? "ok" : ""} data-step={e.eventType.id}>
      <strong>{failed ? names[1] : names[0]}</strong> <When deviceTime={e.deviceTime} receivedAt={receivedAt} />
      {bytes !== undefined && <div>Fetched {sizeText(bytes)}</div>}
      {typeof fields?.rolledBackTo === "string" && <div>Rolled back to {fields.rolledBackTo}</div>}
      {error && <pre class="error">{error}</pre>}
      {!failed && text && <div class="muted">{text}</div>}
    </li>
  );
}

/** A device's note that it dropped queued events (its queue is bounded): a gap in the history, not an update. */
function DroppedNote({ u }: { u: Update }) {
  const d = readDroppedEvents(u.events[0]!);
  return (
    <section class="card" style="margin-bottom:.8rem" data-update={u.correlationId} data-dropped={d?.dropped}>
      <p class="muted" style="margin:0">
        {d ? `The device dropped ${d.dropped} older queued events, dated ${d.from} to ${d.to} by its clock${d.why ? ` (${d.why})` : ""}: this history has a gap there.` : "The device dropped older queued events."}
      </p>
    </section>
  );
}

/** An update's outcome, written out (a cancelled update is not a failure). */
function OutcomeBadge({ u }: { u: Update }) {
  const outcome = updateOutcome(u);
  const cls = { succeeded: "up-to-date", failed: "failed", cancelled: "offline", "in progress": "updating" }[outcome];
  return <span class={`badge s-${cls}`}>{outcome}</span>;
}

export function Timeline({ updates }: { updates: Update[] }) {
  if (!updates.length) return <p class="muted">No updates reported yet.</p>;
  return (
    <>
      {[...updates].reverse().map((u) => u.events[0]?.eventType.id === "EventsDropped" ? <DroppedNote u={u} /> : (
        <section class="card" style="margin-bottom:.8rem" data-update={u.correlationId}>
          <h3 style="margin:.1rem 0 .5rem;font-size:1rem">
            {u.targetName ?? u.correlationId}{" "}
            <OutcomeBadge u={u} />
          </h3>
          <ol class="timeline">
            {u.events.map((e, i) => (
              <Step e={e} receivedAt={u.receivedAt?.[i]} />
            ))}
          </ol>
        </section>
      ))}
    </>
  );
}
