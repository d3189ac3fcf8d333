/**
 * The dashboard's device queries (searchDevices, fleetSummary) as SQL both
 * backends share: only the placeholders, the case-insensitive LIKE and the
 * substring test differ.
 * The status filter reads the `status` column the events trigger keeps
 * current (migration 30), so it costs an index lookup, not a scan of events.
 *
 * @module
 */
import { DEVICE_PAGE_MAX, type DeviceStatus, type FleetDevice } from "../../lib/api/admin.ts";
import { toDevice, type DeviceRecord } from "./_rows.ts";
import type { DeviceSearch, FleetQuery } from "./types.ts";

export interface Dialect {
  /** The placeholder of the n-th (1-based) parameter: "?n" or "$n". */
  param(n: number): string;
  /** Case-insensitive LIKE with a backslash escape. */
  ilike: string;
  /**
   * Whether text `column` holds the text of parameter `s`, exactly: case-sensitive and without
   * wildcards. Not LIKE: SQLite's ignores case (ASCII) where PostgreSQL's does not.
   */
  contains(column: string, s: string): string;
  /** The eventType.id of a stored event's JSON text column. */
  eventType(column: string): string;
  /** Conditions that every one of `labels` is among the device's labels; `p` names a parameter. */
  labels(p: (v: unknown) => string, labels: Record<string, string>): string[];
}

export const SQLITE: Dialect = {
  param: (n) => `?${n}`,
  ilike: "LIKE",
  contains: (c, s) => `instr(${c}, ${s}) > 0`,
  eventType: (c) => `json_extract(${c}, '$.eventType.id')`,
  // json_extract per row while scanning devices (tens of ms per 100,000). Keys match
  // ^[a-z0-9][a-z0-9._/-]*$ (lib/api/admin.ts), so quoting them in the JSON path is enough.
  labels: (p, labels) => Object.entries(labels).map(([k, v]) => `json_extract(labels, ${p(`$."${k}"`)}) = ${p(v)}`),
};
export const POSTGRES: Dialect = {
  param: (n) => `$${n}`,
  ilike: "ILIKE",
  contains: (c, s) => `strpos(${c}, ${s}) > 0`,
  eventType: (c) => `(${c}::jsonb -> 'eventType' ->> 'id')`,
  // Containment of every label at once: answered by the GIN index devices_labels (migration 32).
  labels: (p, labels) => [`labels @> ${p(JSON.stringify(labels))}::text::jsonb`],
};

const SORT_COLUMNS: Record<NonNullable<DeviceSearch["sort"]>, string> = {
  name: "name",
  uuid: "uuid",
  lastSeen: "last_seen",
  createdAt: "created_at",
  hardwareId: "hardware_id",
  target: "current_target",
  status: "status",
};
/**
 * The sort columns that may be empty: a device never seen has no last_seen, one that never said
 * what it runs no current_target. Their empties come last in either direction, on both backends
 * (SQLite by itself puts NULL first ascending, PostgreSQL first descending): sorted by last seen,
 * the list starts with the freshest or with the longest quiet, the devices an operator looks for,
 * and those that never came (a filter of their own, never-seen) do not fill its first pages. Not
 * on the columns that are never empty: there PostgreSQL would no longer read a descending sort
 * from the index backwards.
 */
const NULLABLE_SORT_COLUMNS = new Set(["last_seen", "current_target"]);

export interface StatusRecord extends DeviceRecord {
  /** JSON text, or null before the device reported any (migration 39). */
  reported_tags: string | null;
  status: string;
  status_detail: string | null;
  status_at: string | null;
  effective: string;
}

export const toFleetDevice = (r: StatusRecord): FleetDevice => ({
  ...toDevice(r),
  status: r.effective as DeviceStatus,
  statusDetail: r.status === "failed" || r.status === "rolled-back" ? r.status_detail : null,
  statusAt: r.status_at,
  reportedTags: r.reported_tags === null ? null : (JSON.parse(r.reported_tags) as string[]),
});

const likeEscape = (s: string) => s.replace(/[\\%_]/g, (c) => `\\${c}`);
/**
 * `column` (a JSON array of tags) holds the tag whose quoted text is parameter `t` (tagText).
 * Case-sensitive on both backends, as a tag is wherever else it is compared (lib/tuf/select-target.ts):
 * with SQLite's LIKE a rollout by `prod` took in devices tagged `Prod`, which no target then matched.
 */
const holdsTag = (d: Dialect, column: string, t: string) => d.contains(column, t);
/** A tag as it stands in a JSON array, with its quotes, so "prod" does not match "production". */
const tagText = (tag: string) => JSON.stringify(tag);

/**
 * The conditions of a fleet query (labels, tags, hardware id, name, static group) over `devices`;
 * `p` names a parameter. Revocation is the caller's to add.
 */
export function fleetConditions(d: Dialect, q: FleetQuery, p: (v: unknown) => string): string[] {
  const conds: string[] = [];
  if (q.hardwareId !== undefined) conds.push(`hardware_id = ${p(q.hardwareId)}`);
  for (const t of q.tags ?? []) conds.push(holdsTag(d, "tags", p(tagText(t))));
  if (q.nameContains !== undefined) conds.push(`name ${d.ilike} ${p(`%${likeEscape(q.nameContains)}%`)} ESCAPE '\\'`);
  if (q.labels && Object.keys(q.labels).length) conds.push(...d.labels(p, q.labels));
  if (q.group !== undefined) conds.push(`uuid IN (SELECT device_uuid FROM group_members WHERE group_name = ${p(q.group)})`);
  return conds;
}

/** The query of queryDevices: non-revoked devices matching `q`, by uuid. */
export function queryDevicesSql(d: Dialect, q: FleetQuery): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const conds = ["revoked_at IS NULL", ...fleetConditions(d, q, (v) => (params.push(v), d.param(params.length)))];
  return { sql: `SELECT uuid FROM devices WHERE ${conds.join(" AND ")} ORDER BY uuid`, params };
}

/**
 * The query of queriesMatching: one row (none for an unknown or revoked device) with a column
 * `m<i>` per query, 1 where the device matches `queries[i]`, all in one read of its row.
 */
export function queriesMatchingSql(d: Dialect, uuid: string, queries: FleetQuery[]): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const p = (v: unknown) => (params.push(v), d.param(params.length));
  const u = p(uuid);
  const columns = queries.map((q, i) => {
    const conds = fleetConditions(d, q, p);
    return `CASE WHEN ${conds.length ? conds.join(" AND ") : "1 = 1"} THEN 1 ELSE 0 END AS m${i}`;
  });
  return { sql: `SELECT ${columns.join(", ")} FROM devices WHERE uuid = ${u} AND revoked_at IS NULL`, params };
}

/** At most this many queries a statement of queriesMatching (one column each; SQLite allows 2,000). */
export const QUERIES_PER_READ = 500;

/** The answers of queriesMatchingSql's row, by query: none (no such device) is false for each. */
export const matchesOf = (row: Record<string, unknown> | undefined, n: number): boolean[] =>
  Array.from({ length: n }, (_, i) => Number(row?.[`m${i}`] ?? 0) === 1);

/**
 * SQL for a device's effective status given the offline cut-off at parameter `off`. A device
 * never seen (no check-in since it registered) is `never-seen` once it is past the cut-off, not
 * `offline`: offline says it was there and went quiet, never-seen that it never came (a
 * registration whose device did not start, or an admin's registration of a device yet to be made).
 */
const effective = (off: string) =>
  `CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
        WHEN last_seen IS NULL AND created_at < ${off} THEN 'never-seen'
        WHEN last_seen < ${off} THEN 'offline'
        ELSE status END`;

/**
 * Builds the WHERE clause and parameters of a search. The offline cut-off becomes a parameter only
 * when used (PostgreSQL refuses a parameter the statement does not mention); `off()` names it.
 */
function where(d: Dialect, s: DeviceSearch) {
  const params: unknown[] = [];
  const p = (v: unknown) => {
    params.push(v);
    return d.param(params.length);
  };
  let offName: string | undefined;
  const off = () => (offName ??= p(s.offlineBefore));
  const conds: string[] = [];
  if (s.text) {
    const v = p(`%${likeEscape(s.text)}%`);
    conds.push(`(name ${d.ilike} ${v} ESCAPE '\\' OR uuid ${d.ilike} ${v} ESCAPE '\\')`);
  }
  // A tag the gateway gives the device, or one the device says it follows: a device registered by a
  // fioup before 2026-12-06 with a --tag its token overrode followed that tag, and is found by it.
  // (A group's or a rollout's tag is the gateway's alone: fleetConditions; the count tells them apart.)
  let tag: string | undefined;
  if (s.tag) {
    tag = p(tagText(s.tag));
    conds.push(`(${holdsTag(d, "tags", tag)} OR ${holdsTag(d, "reported_tags", tag)})`);
  }
  conds.push(...fleetConditions(d, s.hardwareId ? { hardwareId: s.hardwareId } : {}, p));
  if (s.uuid) conds.push(`uuid = ${p(s.uuid)}`);
  if (s.uuidFrom) conds.push(`uuid >= ${p(s.uuidFrom)}`);
  if (s.uuidTo) conds.push(`uuid <= ${p(s.uuidTo)}`);
  if (s.uuidAfter) conds.push(`uuid > ${p(s.uuidAfter)}`);
  if (s.target) conds.push(`current_target = ${p(s.target)}`);
  if (s.seenSince) conds.push(`last_seen >= ${p(s.seenSince)}`);
  if (s.unseenSince) conds.push(`(last_seen IS NULL OR last_seen < ${p(s.unseenSince)})`);
  for (const q of s.fleet ?? []) conds.push(...fleetConditions(d, q, p));
  if (s.status === "revoked") conds.push("revoked_at IS NOT NULL");
  // Offline: seen, and not since the cut-off. Written with coalesce, not `last_seen < off`: that one
  // SQLite reads through devices_last_seen, a lookup per row for the most of a fleet that is offline
  // (36 against 11 ms for 88,000 of 100,000), where this scans the covering devices_status_seen.
  else if (s.status === "offline") conds.push(`revoked_at IS NULL AND last_seen IS NOT NULL AND coalesce(last_seen, created_at) < ${off()}`);
  else if (s.status === "never-seen") conds.push(`revoked_at IS NULL AND last_seen IS NULL AND created_at < ${off()}`);
  else if (s.status) conds.push(`status = ${p(s.status)} AND revoked_at IS NULL AND coalesce(last_seen, created_at) >= ${off()}`);
  return { sql: conds.length ? `WHERE ${conds.join(" AND ")}` : "", params, off, tag };
}

/**
 * The page query and the count query of a search (none when `count` is false), in one scan:
 * with `countRevoked` the count says how many of them are revoked too (`revoked`, non-null
 * revoked_at), and with a tag how many of those not revoked are listed only for the tag they
 * report following (`reported_only`: not among their tags). The dashboard says both of a group's
 * or a tag's list, as a group or a rollout by the tag counts none of them.
 */
export function searchSql(d: Dialect, s: DeviceSearch) {
  const w = where(d, s);
  const counts = ["count(*) AS n"];
  if (s.countRevoked) counts.push("count(revoked_at) AS revoked");
  if (w.tag) counts.push(`count(CASE WHEN revoked_at IS NULL AND NOT (${holdsTag(d, "tags", w.tag)}) THEN 1 END) AS reported_only`);
  const count = s.count === false ? undefined : { sql: `SELECT ${counts.join(", ")} FROM devices ${w.sql}`, params: [...w.params] };
  const off = w.off();
  const col = SORT_COLUMNS[s.sort ?? "name"];
  const dir = s.desc ? "DESC" : "ASC";
  const limit = Math.max(1, Math.min(s.limit ?? 50, DEVICE_PAGE_MAX));
  const offset = Math.max(0, s.offset ?? 0);
  return {
    page: {
      sql: `SELECT *, ${effective(off)} AS effective FROM devices ${w.sql}
            ORDER BY ${col} ${dir}${NULLABLE_SORT_COLUMNS.has(col) ? " NULLS LAST" : ""}, uuid ${dir} LIMIT ${limit} OFFSET ${offset}`,
      params: w.params,
    },
    count,
  };
}

/** The queries of fleetSummary; each takes [offlineBefore] or [limit]. */
export function summarySql(d: Dialect) {
  return {
    byStatus: `SELECT ${effective(d.param(1))} AS s, count(*) AS n FROM devices GROUP BY 1`,
    // Every target devices run, not the first 100: the Targets page reads each one's count here,
    // and a fleet of many hardware ids runs more (one showed "0 devices" for a target in use). The
    // GROUP BY reads every device either way; there are as many rows as targets in use.
    versions: `SELECT current_target AS target, count(*) AS n FROM devices WHERE revoked_at IS NULL
               GROUP BY current_target ORDER BY 2 DESC, 1`,
    failures: `SELECT *, ${effective(d.param(1))} AS effective FROM devices
               WHERE status IN ('failed', 'rolled-back') AND revoked_at IS NULL ORDER BY status_at DESC LIMIT ${d.param(2)}`,
  };
}
