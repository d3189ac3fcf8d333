/* @jsxImportSource hono/jsx */
/**
 * The fleet overview: what needs a person (../attention.tsx), devices by status, versions across
 * the fleet, check-ins per minute, recent failures. Without `s` (the database out of reach) only
 * the first.
 */
import { DEVICE_STATUSES, type FleetSummary } from "../../../lib/api/admin.ts";
import { BarChart, ColumnChart } from "../charts.tsx";
import { AttentionList, type Attention } from "../attention.tsx";
import { Ago, Badge, counted } from "../layout.tsx";
import { failureReason } from "../../fleet/update-outcome.ts";

export function Overview({ s, attention }: { s: FleetSummary | undefined; attention: Attention[] }) {
  return (
    <>
      <h1>Fleet overview</h1>
      <div id="overview" data-live>
        <AttentionList items={attention} />
        {s && <Fleet s={s} />}
      </div>
    </>
  );
}

function Fleet({ s }: { s: FleetSummary }) {
  return (
    <>
      <div class="grid">
        <section class="card" aria-labelledby="h-status">
          <h2 id="h-status">Devices by status</h2>
          <p>
            <strong>{counted(s.total, "device")}</strong>
          </p>
          <table>
            <tbody>
              {DEVICE_STATUSES.map((st) => (
                <tr>
                  <td>
                    <a href={`/ui/devices?status=${st}`}>
                      <Badge status={st} />
                    </a>
                  </td>
                  <td data-status-count={st}>{String(s.byStatus[st] ?? 0)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <p class="muted">
            Offline: no check-in for {Math.round(s.offlineAfterSeconds / 60)} min. Never seen: none since it was registered, that long ago or more.
          </p>
        </section>
        <section class="card" aria-labelledby="h-checkins">
          <h2 id="h-checkins">Check-ins per minute</h2>
          <ColumnChart values={s.checkinsPerMinute} title="Device check-ins per minute on this gateway" unit="/min" />
          <p class="muted">Metadata requests devices made to this gateway replica.</p>
        </section>
      </div>
      <section class="card" aria-labelledby="h-versions" style="margin-top:1rem">
        <h2 id="h-versions">Versions across the fleet</h2>
        <BarChart
          title="Devices per running target"
          bars={s.versions.slice(0, 15).map((v) => ({
            label: v.target ?? "(no target yet)", // registered, or every update failed: it runs nothing we published
            value: v.devices,
            href: v.target ? `/ui/devices?target=${encodeURIComponent(v.target)}` : undefined,
          }))}
        />
        {(s.byStatus.revoked ?? 0) > 0 && <p class="muted">{`Revoked devices (${s.byStatus.revoked}) are not counted here: they run nothing this gateway serves.`}</p>}
      </section>
      <section aria-labelledby="h-failures">
        <h2 id="h-failures">Recent failures</h2>
        {s.recentFailures.length ? (
          <div class="scroll">
            <table>
              <thead>
                <tr>
                  <th>Device</th>
                  <th>Status</th>
                  <th>Reason</th>
                  <th class="opt">When</th>
                </tr>
              </thead>
              <tbody>
                {s.recentFailures.map((d) => (
                  <tr>
                    <td>
                      <a href={`/ui/devices/${d.uuid}`}>{d.name}</a>
                    </td>
                    <td>
                      <Badge status={d.status} />
                    </td>
                    <td>{failureReason(d.statusDetail)}</td>
                    <td class="opt">
                      <Ago at={d.statusAt} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p class="muted">No failed updates.</p>
        )}
      </section>
    </>
  );
}
