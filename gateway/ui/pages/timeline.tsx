/* @jsxImportSource hono/jsx */
/** A device's update history as a timeline: each step of each update, bytes fetched, the error text of a failure. */
import type { Update } from "../../../lib/api/admin.ts";
import type { DeviceEvent } from "../../../lib/api/index.ts";

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

export const formatBytes = (n: number) =>
  n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : n < 1073741824 ? `${(n / 1048576).toFixed(1)} MiB` : `${(n / 1073741824).toFixed(2)} GiB`;

/** The human reason of a failure's details text (the `error` field of structured details). */
export function failureReason(details: string | null | undefined): string {
  if (!details) return "(no reason given)";
  try {
    const v = JSON.parse(details) as { error?: unknown; phase?: unknown };
    if (v && typeof v.error === "string") return `${typeof v.phase === "string" ? `${v.phase}: ` : ""}${v.error}`;
  } catch {}
  return details.length > 300 ? `${details.slice(0, 300)}…` : details;
}

function Step({ e }: { e: DeviceEvent }) {
  const failed = e.event.success === false;
  const names = STEP_NAMES[e.eventType.id] ?? [e.eventType.id, `${e.eventType.id} (failed)`];
  const { fields, text } = detailsOf(e);
  const bytes = typeof fields?.bytesFetched === "number" ? fields.bytesFetched : undefined;
  const error = failed ? (typeof fields?.error === "string" ? fields.error : text) : undefined;
  return (
    <li class={failed ? "bad" : e.event.success === true ? "ok" : ""} data-step={e.eventType.id}>
      <strong>{failed ? names[1] : names[0]}</strong> <time datetime={e.deviceTime} class="muted">{e.deviceTime}</time>
      {bytes !== undefined && <div>Fetched {formatBytes(bytes)}</div>}
      {typeof fields?.rolledBackTo === "string" && <div>Rolled back to {fields.rolledBackTo}</div>}
      {error && <pre class="error">{error}</pre>}
      {!failed && text && <div class="muted">{text}</div>}
    </li>
  );
}

export function Timeline({ updates }: { updates: Update[] }) {
  if (!updates.length) return <p class="muted">No updates reported yet.</p>;
  return (
    <>
      {[...updates].reverse().map((u) => (
        <section class="card" style="margin-bottom:.8rem" data-update={u.correlationId}>
          <h3 style="margin:.1rem 0 .5rem;font-size:1rem">
            {u.targetName ?? u.correlationId}{" "}
            {u.success === true ? <span class="badge s-up-to-date">succeeded</span> : u.success === false ? <span class="badge s-failed">failed</span> : <span class="badge s-updating">in progress</span>}
          </h3>
          <ol class="timeline">
            {u.events.map((e) => (
              <Step e={e} />
            ))}
          </ol>
        </section>
      ))}
    </>
  );
}
