/* @jsxImportSource hono/jsx */
/** The device list: filters in a GET form (bookmarkable), sortable columns, server-side pages. */
import { DEVICE_STATUSES, MAX_FLEET_OFFSET, type FleetDeviceList } from "../../../lib/api/admin.ts";
import { tagsText } from "../../fleet/tags-text.ts";
import type { Refusal } from "../form.ts";
import { Ago, Badge, counted, Refused } from "../layout.tsx";

/** The list's query parameters, as the page URL and the admin API share them. */
export const LIST_PARAMS = ["q", "tag", "label", "group", "hwid", "target", "status", "seenWithin", "unseenFor", "sort", "dir"] as const;
export type ListParams = Partial<Record<(typeof LIST_PARAMS)[number] | "page", string>>;

export const PAGE_SIZE = 50;
/** The furthest page the admin API can be asked for: the one at its furthest offset. */
export const MAX_PAGE = Math.floor(MAX_FLEET_OFFSET / PAGE_SIZE) + 1;
/** The number of the last page of `total` devices (1 when there are none). */
export const lastPage = (total: number) => Math.max(1, Math.ceil(total / PAGE_SIZE));

const SEEN = [
  ["", "any time"],
  ["3600", "seen in the last hour"],
  ["86400", "seen in the last day"],
] as const;
const UNSEEN = [
  ["", "-"],
  ["3600", "not seen for an hour"],
  ["86400", "not seen for a day"],
  ["604800", "not seen for a week"],
] as const;

const qs = (p: ListParams) =>
  Object.entries(p)
    .filter(([, v]) => v)
    .map(([k, v]) => `${k}=${encodeURIComponent(v!)}`)
    .join("&");

function SortLink({ p, col, label }: { p: ListParams; col: string; label: string }) {
  const active = (p.sort ?? "name") === col;
  const dir = active && p.dir !== "desc" ? "desc" : "asc";
  const arrow = active ? (p.dir === "desc" ? " ↓" : " ↑") : "";
  return (
    <a href={`/ui/devices?${qs({ ...p, sort: col, dir, page: undefined })}`} aria-sort={active ? (p.dir === "desc" ? "descending" : "ascending") : undefined}>
      {label + arrow}
    </a>
  );
}

export interface DevicesProps {
  p: ListParams;
  /** The page shown: a whole number from 1 to the last. */
  page?: number;
  /** The page of devices; none when the filters were refused. */
  list?: FleetDeviceList;
  /**
   * How many of the devices listed are revoked, when the list is of a group's or a tag's (which
   * never count them). A tag's list says too how many only report following the tag (the list's
   * `reportedOnly`), which a rollout by the tag does not reach either.
   */
  revoked?: number;
  /** The store's time for the list. */
  ms?: string;
  /** Filters the API refused: the form with them as given, why above it, no list. */
  refused?: Refusal;
}

export function DevicesPage({ p, page = 1, list, revoked, ms = "?", refused }: DevicesProps) {
  return (
    <>
      <h1>Devices</h1>
      {refused && <Refused message={refused.message} />}
      <form class="filters" method="get" action="/ui/devices" role="search">
        <label>
          Name or uuid
          <input name="q" value={p.q ?? ""} type="search" />
        </label>
        <label>
          Tag
          <input name="tag" value={p.tag ?? ""} />
        </label>
        <label>
          Label
          <input name="label" value={p.label ?? ""} placeholder="key=value" />
        </label>
        <label>
          Group
          <input name="group" value={p.group ?? ""} />
        </label>
        <label>
          Hardware id
          <input name="hwid" value={p.hwid ?? ""} />
        </label>
        <label>
          Target
          <input name="target" value={p.target ?? ""} />
        </label>
        <label>
          Status
          <select name="status">
            <option value="">any</option>
            {DEVICE_STATUSES.map((s) => (
              <option value={s} selected={p.status === s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          Last seen
          <select name="seenWithin">
            {SEEN.map(([v, l]) => (
              <option value={v} selected={(p.seenWithin ?? "") === v}>
                {l}
              </option>
            ))}
          </select>
        </label>
        <label>
          Not seen
          <select name="unseenFor">
            {UNSEEN.map(([v, l]) => (
              <option value={v} selected={(p.unseenFor ?? "") === v}>
                {l}
              </option>
            ))}
          </select>
        </label>
        {p.sort && <input type="hidden" name="sort" value={p.sort} />}
        {p.dir && <input type="hidden" name="dir" value={p.dir} />}
        <button type="submit" class="primary">
          Filter
        </button>
        <a href="/ui/devices">Clear</a>
      </form>
      {list && <DeviceList p={p} page={page} list={list} revoked={revoked} ms={ms} />}
    </>
  );
}

/** The list's page of devices, its count and its pages (the region that refreshes itself). */
function DeviceList({ p, page, list, revoked, ms }: { p: ListParams; page: number; list: FleetDeviceList; revoked?: number; ms: string }) {
  const total = list.total ?? 0; // always counted here: the dashboard pages by offset, never by `after`
  const last = lastPage(total);
  const pageHref = (n: number) => {
    const query = qs({ ...p, page: n > 1 ? String(n) : undefined });
    return query ? `/ui/devices?${query}` : "/ui/devices";
  };
  const from = total ? list.offset + 1 : 0;
  const to = list.offset + list.devices.length;
  // Listed by a tag they only report following: their tags, which a rollout by the tag reads, lack it.
  const reportedOnly = p.tag ? (list.reportedOnly ?? 0) : 0;
  const apart = (revoked ?? 0) + reportedOnly;
  return (
    <>
      <div id="device-list" data-live>
        <p class="muted" data-total={String(total)}>
          {total ? `${from.toLocaleString("en")}–${to.toLocaleString("en")} of ${counted(total, "device")}` : "No devices match."}
          {revoked ? (
            <span data-revoked={String(revoked)}>
              {", "}
              <a href={`/ui/devices?${qs({ ...p, status: "revoked", page: undefined })}`}>{`${revoked.toLocaleString("en")} of them revoked`}</a>
              {" (in no group, no rollout)"}
            </span>
          ) : null}
          {reportedOnly ? (
            <span data-reported-only={String(reportedOnly)}>
              {`, ${reportedOnly.toLocaleString("en")} only following ${p.tag}, not carrying it (no rollout by tag ${p.tag} reaches ${reportedOnly === 1 ? "it" : "them"})`}
            </span>
          ) : null}
          {apart ? `: ${(total - apart).toLocaleString("en")} without them` : null}{" "}
          <span title="store time">({ms} ms)</span>
        </p>
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th>
                  <SortLink p={p} col="name" label="Name" />
                </th>
                <th>
                  <SortLink p={p} col="status" label="Status" />
                </th>
                <th>
                  <SortLink p={p} col="target" label="Target" />
                </th>
                <th class="opt">
                  <SortLink p={p} col="hardwareId" label="Hardware id" />
                </th>
                <th class="opt">Tags</th>
                <th>
                  <SortLink p={p} col="lastSeen" label="Last seen" />
                </th>
              </tr>
            </thead>
            <tbody>
              {list.devices.map((d) => (
                <tr data-uuid={d.uuid}>
                  <td>
                    <a href={`/ui/devices/${d.uuid}`}>{d.name}</a>
                    <div class="muted opt" style="font-size:.8em">
                      {d.uuid}
                    </div>
                  </td>
                  <td>
                    <Badge status={d.status} />
                  </td>
                  <td>{d.currentTarget ?? "-"}</td>
                  <td class="opt">{d.hardwareId}</td>
                  <td class="opt">{tagsText(d)}</td>
                  <td>
                    <Ago at={d.lastSeen} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {last > 1 && (
          <nav class="pager" aria-label="Pages">
            {page > 1 && <a href={pageHref(1)}>« First</a>}
            {page > 1 && <a href={pageHref(page - 1)}>← Previous</a>}
            <span data-page={String(page)}>{`Page ${page.toLocaleString("en")} of ${last.toLocaleString("en")}`}</span>
            {page < last && <a href={pageHref(page + 1)}>Next →</a>}
            {page < last && <a href={pageHref(last)}>Last »</a>}
          </nav>
        )}
      </div>
    </>
  );
}
