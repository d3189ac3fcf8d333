import { readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { openSession } from "../session.ts";
import { subjectCn } from "../../lib/api/device.ts";
import { MAX_QUEUED_EVENT_BYTES } from "../db.ts";
import type { DroppedEvents } from "../events/event.ts";
import { appStatuses, type AppStatusReport } from "../converge.ts";
import { currentTarget } from "../update/current-target.ts";
import { fetchStallOf, type FetchStall } from "../update/fetch-step.ts";
import { holdStatus } from "../update/hold.ts";
import { listUpdateLocks, updateLocksDir, type UpdateLockInfo } from "../update/update-locks.ts";
import { updateLockHolder } from "../update/update-lock.ts";
import { sotaDirFlag } from "./_flags.ts";
import { renderSummary, summarize, type UpdateSummary } from "../update/summary.ts";

interface StatusOutput {
  registered: boolean;
  /** Registered, but its key, certificate or CA file is damaged: what is wrong (every command that talks to the gateway stops on it). */
  registrationProblem: string | null;
  uuid: string | null;
  server: string | null;
  hardwareId: string | null;
  tags: string[];
  shortlist: string[] | null;
  current: { name: string; version: string; apps: string[] } | null;
  pending: UpdateSummary | null;
  /** The fioup working on updates now (it holds the update lock): the pending update is in progress there, no command is next. */
  inProgressIn: { pid: number; command: string | null } | null;
  last: UpdateSummary | null;
  updates: UpdateSummary[];
  badTargets: string[];
  queuedEvents: number;
  /** Queued events dropped to keep the queue within its bound (fioup/db.ts), while the note of it waits to be sent. */
  droppedEvents: DroppedEvents | null;
  /** The pending update's download is retrying (a stalled or dropped link): which blob, why, and since when no byte arrived. */
  fetchStall: FetchStall | null;
  /** The pending update's install is deferred (a clock not yet set, the maintenance window or update locks): why and until when. */
  hold: ReturnType<typeof holdStatus> | null;
  /** Update locks held now (<storage>/update-locks/). */
  updateLocks: UpdateLockInfo[];
  /** The installed apps as the gateway sees them (apps-states). */
  apps?: Record<string, unknown>;
  /** Each app of the current target: running, stopped, or outside the shortlist. */
  targetApps?: AppStatusReport[];
  appsError?: string;
}

/** Why the install is deferred, as the status line says it. */
function holdText(h: NonNullable<StatusOutput["hold"]>): string {
  if (h.reason === "clock") return h.message ?? "waiting for a trustworthy clock";
  if (h.reason === "window") return `outside the maintenance window "${h.window}" (${h.zone}), opens ${h.until ?? "not in the next 8 days"}`;
  return `held by update locks ${h.locks?.join(", ")} until released or ${h.until} (maximum hold time)`;
}

export default defineCommand({
  summary: "Show the running target, the pending or last update (with bytes fetched) and each app: running, stopped or outside the shortlist",
  flags: {
    ...sotaDirFlag,
    ...formatFlag,
    "no-apps": { type: "boolean", description: "Do not ask the container engine for app states" },
  },
  async run({ flags, out }) {
    const s = openSession({ ...flags, readOnly: true });
    try {
      let uuid: string | null = null;
      if (s.client || s.clientProblem) {
        try {
          uuid = subjectCn(new X509Certificate(readFileSync(s.cfg.certPath, "utf8")).subject) ?? null;
        } catch {
          // unreadable cert: leave null
        }
      }
      const cur = currentTarget(s.cfg, s.db);
      const pending = s.db.pendingUpdate();
      const last = s.db.lastUpdate();
      const holder = updateLockHolder(s.lockPath);
      const result: StatusOutput = {
        registered: !!s.client || s.clientProblem !== undefined,
        registrationProblem: s.clientProblem ?? null,
        uuid,
        server: s.cfg.server ?? null,
        hardwareId: s.cfg.hardwareId ?? null,
        tags: s.cfg.tags,
        shortlist: s.cfg.shortlist ?? null,
        current: cur ? { name: cur.name, version: cur.entry.custom.version, apps: Object.keys(cur.entry.custom.docker_compose_apps) } : null,
        pending: pending ? summarize(pending) : null,
        inProgressIn: holder ? { pid: holder.pid, command: holder.command } : null,
        last: last ? summarize(last) : null,
        updates: s.db.listUpdates(10).map(summarize),
        badTargets: s.db.badTargets(),
        queuedEvents: s.db.queuedEventCount(),
        droppedEvents: s.db.droppedEvents() ?? null,
        fetchStall: (pending?.state === "fetching" && fetchStallOf(s.db, pending.id)) || null,
        hold: (pending && holdStatus(s.cfg, s.db, pending)) || null,
        updateLocks: listUpdateLocks(updateLocksDir(s.cfg)),
      };
      if (!flags["no-apps"]) {
        try {
          const timeout = new Promise<never>((_, rej) => setTimeout(() => rej(new Error("the container engine did not answer in 10 s")), 10_000).unref());
          [result.apps, result.targetApps] = await Promise.race([Promise.all([s.runtime.appsState(), appStatuses(s)]), timeout]);
        } catch (e) {
          result.appsError = (e as Error).message;
        }
      }
      out.result(result, (o) =>
        [
          `Device: ${o.uuid ?? (o.registered ? "(registered, uuid unreadable)" : "(not registered)")}${o.server ? ` at ${o.server}` : ""}`,
          ...(o.registrationProblem ? [`Registration: ${o.registrationProblem}`] : []),
          `Hardware id: ${o.hardwareId ?? "-"}  tags: ${o.tags.join(",") || "-"}  apps: ${o.shortlist?.join(",") ?? "all"}`,
          `Running: ${o.current ? `${o.current.name} (version ${o.current.version}; ${o.current.apps.join(", ")})` : "(none)"}`,
          ...(o.pending ? ["Pending:", renderSummary(o.pending, holder?.who)] : o.last ? ["Last update:", renderSummary(o.last)] : []),
          ...(o.fetchStall ? [`Download retrying: no data for ${o.fetchStall.blob} since ${o.fetchStall.noDataSince}; last try: ${o.fetchStall.retrying}`] : []),
          ...(o.hold ? [`Install deferred${o.hold.heldSince ? ` since ${o.hold.heldSince}` : ""}: ${holdText(o.hold)}`] : []),
          ...(o.updateLocks.length ? [`Update locks: ${o.updateLocks.map((l) => `${l.name}${l.reason ? ` (${l.reason})` : ""}`).join(", ")}`] : []),
          ...(o.badTargets.length ? [`Bad targets: ${o.badTargets.join(", ")}`] : []),
          ...(o.queuedEvents
            ? [
                `Events waiting to be sent: ${o.queuedEvents}` +
                  (o.droppedEvents
                    ? ` (${o.droppedEvents.dropped} older ones dropped, of ${o.droppedEvents.from} to ${o.droppedEvents.to}: the queue keeps at most ${MAX_QUEUED_EVENT_BYTES} bytes; the gateway is told)`
                    : ""),
              ]
            : []),
          ...(o.targetApps
            ? o.targetApps.map((a) => `App ${a.name}: ${a.status}${a.status === "outside the shortlist" && a.containersRunning ? " (still running)" : ""}`)
            : o.appsError
              ? [`Apps: unknown (${o.appsError})`]
              : []),
        ].join("\n"),
      );
    } finally {
      s.close();
    }
  },
});
