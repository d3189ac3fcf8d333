/* @jsxImportSource hono/jsx */
/** One device: identity, status, current target, apps with their health, update timeline, inventory, actions. */
import type { DeviceDetail, FleetDevice, GroupRow, Update } from "../../../lib/api/admin.ts";
import { labelsText } from "../../fleet/label-text.ts";
import { tagsText } from "../../fleet/tags-text.ts";
import { fitsOnALine, labelsFormText } from "../labels-form.ts";
import type { Refusal } from "../form.ts";
import { Ago, Badge, Csrf, Refused } from "../layout.tsx";
import { failureReason } from "../../fleet/update-outcome.ts";
import { Timeline } from "./timeline.tsx";

/** A device's groups, as its page shows them when it loads. */
export interface DeviceGroups {
  /** The static groups it may be added to. */
  addable: string[];
  /** The groups it is in now. */
  member: Pick<GroupRow, "name" | "kind">[];
}

export interface DeviceProps {
  d: DeviceDetail;
  status: FleetDevice | undefined;
  updates: Update[];
  /** Its groups; absent from a live refresh, which takes only the live region they stand outside. */
  groups?: DeviceGroups;
  /** What the form just done did ("Added to group pilot."), said once. */
  notice?: string;
  csrf: string;
  canWrite: boolean;
  /** One of the forms' input, refused: said above that form (`form`: tags, labels, group, revoke), typed input kept. */
  refused?: Refusal;
}

const json = (v: unknown) => JSON.stringify(v, null, 2);


export function DevicePage({ d, status, updates, groups, notice, csrf, canWrite, refused }: DeviceProps) {
  const apps = Object.entries(d.appsStates?.apps ?? {});
  const labels = d.labels ?? {};
  const multiLine = Object.keys(labels).filter((k) => !fitsOnALine(labels[k]!));
  /** The refusal of form `form`, above it; the field with the typed input gets the focus (the page scrolls to it). */
  const why = (form: string) => refused?.form === form && <Refused message={refused.message} />;
  const typed = (form: string, field: string) => (refused?.form === form ? refused.typed?.[field] : undefined);
  const addable = groups?.addable ?? [];
  const formShown = canWrite && !d.revokedAt && (refused?.form !== "group" || addable.length > 0);
  return (
    <>
      <p>
        <a href="/ui/devices">← Devices</a>
      </p>
      <h1>{d.name}</h1>
      {refused && !formShown && <Refused message={refused.message} />}
      {notice && (
        <p class="msg" role="status">
          {notice}
        </p>
      )}
      {/* Outside the live region: the groups are looked up when the page loads (one request). */}
      {groups && (
        <dl class="kv groups">
          <dt>Groups</dt>
          <dd data-groups>
            {groups.member.length
              ? groups.member.map((g, i) => (
                  <>
                    {i > 0 && ", "}
                    <a href={`/ui/groups/${encodeURIComponent(g.name)}`}>{g.name}</a>
                    {g.kind === "dynamic" && " (dynamic)"}
                  </>
                ))
              : "-"}
          </dd>
        </dl>
      )}
      <div id="device" data-live>
        <div class="grid">
          <section class="card" aria-labelledby="h-id">
            <h2 id="h-id">Identity</h2>
            <dl class="kv">
              <dt>Status</dt>
              <dd>{status ? <Badge status={status.status} /> : "-"}</dd>
              <dt>UUID</dt>
              <dd>
                <code>{d.uuid}</code>
              </dd>
              <dt>Hardware id</dt>
              <dd>{d.hardwareId}</dd>
              <dt>Tags</dt>
              <dd>{tagsText({ tags: d.tags, reportedTags: status?.reportedTags })}</dd>
              <dt>Labels</dt>
              <dd data-labels>{labelsText(labels) || "-"}</dd>
              <dt>Current target</dt>
              <dd data-current-target>{d.currentTarget ?? "-"}</dd>
              <dt>Last seen</dt>
              <dd>
                <Ago at={d.lastSeen} />
              </dd>
              <dt>Registered</dt>
              <dd>
                <Ago at={d.createdAt} />
              </dd>
              <dt>Certificate serial</dt>
              <dd>
                <code>{d.certSerial}</code>
              </dd>
              {d.revokedAt && (
                <>
                  <dt>Revoked</dt>
                  <dd class="error">{d.revokedAt}</dd>
                </>
              )}
            </dl>
            {status?.statusDetail && <p class="error">Last failure: {failureReason(status.statusDetail)}</p>}
          </section>
          <section class="card" aria-labelledby="h-apps">
            <h2 id="h-apps">Apps</h2>
            {apps.length ? (
              <table>
                <tbody>
                  {apps.map(([name, a]) => (
                    <tr>
                      <td>
                        <strong>{name}</strong>
                        <div class="muted">
                          {a.services.map((s) => `${s.name}: ${s.state}${s.health ? ` (${s.health})` : ""}`).join(", ")}
                        </div>
                      </td>
                      <td>
                        <Badge status={a.state} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            ) : (
              <p class="muted">{d.apps?.length ? `Running: ${d.apps.join(", ")} (no health reported)` : "No app states reported."}</p>
            )}
          </section>
        </div>
        <section aria-labelledby="h-history">
          <h2 id="h-history">Update history</h2>
          <Timeline updates={updates} />
        </section>
        <section aria-labelledby="h-inv">
          <h2 id="h-inv">Inventory</h2>
          {(["hardware", "network", "config"] as const).map((k) => (
            <details>
              <summary>{k === "hardware" ? "System info" : k === "network" ? "Network" : "Config"}</summary>
              {d.systemInfo[k] === undefined ? <p class="muted">Not reported.</p> : <pre>{json(d.systemInfo[k]).slice(0, 20000)}</pre>}
            </details>
          ))}
        </section>
      </div>
      {canWrite && !d.revokedAt && (
        <section aria-labelledby="h-actions">
          <h2 id="h-actions">Actions</h2>
          <div class="grid">
            <form method="post" action={`/ui/devices/${d.uuid}/tags`} class="card">
              <Csrf token={csrf} />
              {why("tags")}
              <label>
                Tags (comma-separated)
                <input name="tags" value={typed("tags", "tags") ?? d.tags.join(",")} autofocus={refused?.form === "tags"} />
              </label>
              {/* What a change here does on the device (docs/formats.md "Device API"), said before it is made. */}
              <p class="muted">
                {d.tagsFromDevice
                  ? "This device chooses its own tags (its registration token allows it): tags set here are replaced by those it reports at its next check-in."
                  : "The device follows these from its next check-in. Clearing them does not reach it: it keeps the tags it follows."}
              </p>
              <p>
                <button type="submit">Set tags</button>
              </p>
            </form>
            <form method="post" action={`/ui/devices/${d.uuid}/labels`} class="card">
              <Csrf token={csrf} />
              {why("labels")}
              <label>
                Labels (one key=value a line; the value is the rest of the line)
                <textarea name="labels" rows={Math.min(Math.max(Object.keys(labels).length + 1, 3), 12)} autofocus={refused?.form === "labels"}>
                  {typed("labels", "labels") ?? labelsFormText(labels)}
                </textarea>
              </label>
              <p class="muted">The field replaces the labels: a label left out is removed.</p>
              {multiLine.length > 0 && (
                <p class="muted" data-labels-kept>
                  {`Kept as they are (a value with a line break cannot be edited here; use gateway devices label): ${multiLine.join(", ")}`}
                </p>
              )}
              <p>
                <button type="submit">Set labels</button>
              </p>
            </form>
            {addable.length > 0 && (
              <form method="post" action={`/ui/devices/${d.uuid}/group`} class="card">
                <Csrf token={csrf} />
                {why("group")}
                <label>
                  Static group
                  <select name="group" autofocus={refused?.form === "group"}>
                    {addable.map((g) => (
                      <option value={g} selected={typed("group", "group") === g}>
                        {g}
                      </option>
                    ))}
                  </select>
                </label>
                <p>
                  <button type="submit">Add to group</button>
                </p>
              </form>
            )}
            <form method="post" action={`/ui/devices/${d.uuid}/revoke`} class="card" data-confirm={`Revoke ${d.name}? It can no longer check in or register again.`}>
              <Csrf token={csrf} />
              {why("revoke")}
              <p>The device's certificate stops working at once; it cannot register again under this uuid.</p>
              <button type="submit" class="danger">
                Revoke device
              </button>
            </form>
          </div>
        </section>
      )}
    </>
  );
}
