/**
 * Rows and SQL that both backends share for groups and rollouts: record
 * mappers, the rollout column list, the queries of pendingRolloutEvidence.
 * (Fleet queries over devices are in _search.ts, with the device searches.)
 *
 * @module
 */
import { labelCountProblem } from "../../lib/api/admin.ts";
import type { AppsStates } from "../../lib/api/index.ts";
import type { Dialect } from "./_search.ts";
import { jsonColumn, sortedKeys, storedJson } from "./_rows.ts";
import type {
  GroupRow,
  RolloutDeviceRow,
  RolloutEventRow,
  RolloutEvidence,
  RolloutHold,
  NewRollout,
  RolloutDeviceFilter,
  RolloutPatch,
  RolloutRow,
  StoredEvent,
} from "./types.ts";
import { TooManyLabelsError } from "./types.ts";
import type { DeviceEvent } from "../../lib/api/index.ts";

/**
 * The conditions on rollout_devices of rolloutDeviceStates and countRolloutDevices, one home for
 * both stores; `p` names a parameter.
 */
export function rolloutDeviceConds(p: (v: unknown) => string, id: string, f: RolloutDeviceFilter): string[] {
  const conds = [`rollout_id = ${p(id)}`];
  if (f.wave !== undefined) conds.push(`wave = ${p(f.wave)}`);
  if (f.status) conds.push(`status = ${p(f.status)}`);
  if (f.held) conds.push("hold IS NOT NULL");
  if (f.waiting) conds.push("status = 'pending' AND reason IS NOT NULL");
  return conds;
}

export interface GroupRecord {
  name: string;
  kind: string;
  query: string | null;
  created_at: string;
}

export const toGroup = (r: GroupRecord): GroupRow => ({
  name: r.name,
  kind: r.kind === "dynamic" ? "dynamic" : "static",
  query: r.query,
  createdAt: r.created_at,
});

export interface RolloutRecord {
  id: string;
  target_version: string;
  group_name: string | null;
  tag: string | null;
  waves: string;
  soak_s: number | string;
  max_failures_pct: number | string;
  health_window_s: number | string;
  pending_timeout_s: number | string;
  install_window: string | null;
  max_hold_s: number | string | null;
  rollback_on_halt: number | string;
  state: string;
  wave: number | string;
  wave_started_at: string;
  wave_starts?: string | null;
  reason: string | null;
  revision: number | string;
  acknowledged_failures: number | string;
  created_at: string;
  updated_at: string;
}

export const toRollout = (r: RolloutRecord): RolloutRow => ({
  id: r.id,
  targetVersion: r.target_version,
  groupName: r.group_name,
  tag: r.tag,
  waves: JSON.parse(r.waves),
  soakS: Number(r.soak_s),
  maxFailuresPct: Number(r.max_failures_pct),
  healthWindowS: Number(r.health_window_s),
  pendingTimeoutS: Number(r.pending_timeout_s),
  installWindow: r.install_window,
  maxHoldS: r.max_hold_s === null ? null : Number(r.max_hold_s),
  rollbackOnHalt: Number(r.rollback_on_halt) === 1,
  state: r.state as RolloutRow["state"],
  wave: Number(r.wave),
  waveStartedAt: r.wave_started_at,
  ...(r.wave_starts ? { waveStarts: jsonColumn<string[]>(r.wave_starts, []) } : {}),
  reason: r.reason,
  revision: Number(r.revision),
  acknowledgedFailures: Number(r.acknowledged_failures),
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** Each RolloutRow field's column and how its value is stored. */
const ROLLOUT_COLUMNS: { [K in keyof RolloutRow]-?: [column: string, encode?: (v: RolloutRow[K]) => unknown] } = {
  id: ["id"],
  targetVersion: ["target_version"],
  groupName: ["group_name"],
  tag: ["tag"],
  waves: ["waves", (v) => JSON.stringify(v)],
  soakS: ["soak_s"],
  maxFailuresPct: ["max_failures_pct"],
  healthWindowS: ["health_window_s"],
  pendingTimeoutS: ["pending_timeout_s"],
  installWindow: ["install_window"],
  maxHoldS: ["max_hold_s"],
  rollbackOnHalt: ["rollback_on_halt", (v) => (v ? 1 : 0)],
  state: ["state"],
  wave: ["wave"],
  waveStartedAt: ["wave_started_at"],
  waveStarts: ["wave_starts", (v) => JSON.stringify(v)],
  reason: ["reason"],
  revision: ["revision"],
  acknowledgedFailures: ["acknowledged_failures"],
  createdAt: ["created_at"],
  updatedAt: ["updated_at"],
};

/** The columns and stored values of the fields present in `row` (a whole row or a patch). */
export function rolloutColumns(row: RolloutPatch | NewRollout): { columns: string[]; values: unknown[] } {
  const columns: string[] = [];
  const values: unknown[] = [];
  for (const [field, value] of Object.entries(row)) {
    if (value === undefined) continue;
    const spec = ROLLOUT_COLUMNS[field as keyof RolloutRow] as [string, ((v: unknown) => unknown)?] | undefined;
    if (!spec) continue;
    columns.push(spec[0]);
    values.push(spec[1] ? spec[1](value) : value);
  }
  return { columns, values };
}

export interface RolloutDeviceRecord {
  rollout_id: string;
  device_uuid: string;
  wave: number | string;
  status: string;
  reason: string | null;
  healthy_since: string | null;
  hold: string | null;
  updated_at: string;
}

export const toRolloutDevice = (r: RolloutDeviceRecord): RolloutDeviceRow => ({
  rolloutId: r.rollout_id,
  uuid: r.device_uuid,
  wave: Number(r.wave),
  status: r.status as RolloutDeviceRow["status"],
  reason: r.reason,
  healthySince: r.healthy_since,
  hold: jsonColumn<RolloutHold | null>(r.hold, null),
  updatedAt: r.updated_at,
});

export interface RolloutEventRecord {
  id: number | string;
  rollout_id: string;
  at: string;
  kind: string;
  wave: number | string | null;
  device_uuid: string | null;
  reason: string;
}

export const toRolloutEvent = (r: RolloutEventRecord): RolloutEventRow => ({
  id: Number(r.id),
  rolloutId: r.rollout_id,
  at: r.at,
  kind: r.kind as RolloutEventRow["kind"],
  wave: r.wave === null ? null : Number(r.wave),
  deviceUuid: r.device_uuid,
  reason: r.reason,
});

/** The condition of listRolloutEvents' `device` option (partial index rollout_events_transitions for false). */
export const eventsOf = (device: boolean | undefined) =>
  device === undefined ? "" : device ? "AND device_uuid IS NOT NULL" : "AND device_uuid IS NULL";

/**
 * The rollouts that gate devices (Store.gatingRollouts): per target version its newest rollout,
 * unless it completed. Over every rollout ever made, not the newest page of them: a cancelled
 * rollout older than that must go on withholding its version.
 */
export const GATING_ROLLOUTS_SQL = `SELECT * FROM (
    SELECT r.*, row_number() OVER (PARTITION BY target_version ORDER BY created_at DESC, id DESC) AS newest FROM rollouts r
  ) AS g WHERE newest = 1 AND state <> 'completed' ORDER BY id`;

/** The members' part of pendingRolloutEvidence: one row per pending member of waves 0..maxWave. */
export const EVIDENCE_MEMBERS = (d: Dialect) => `
  SELECT m.device_uuid AS uuid, m.wave, m.healthy_since, m.hold, m.reason, d.hardware_id, d.tags, d.current_target, d.status, d.last_seen, d.revoked_at, a.body AS apps_body, a.updated_at AS apps_at
  FROM rollout_devices m
  LEFT JOIN devices d ON d.uuid = m.device_uuid
  LEFT JOIN apps_states a ON a.device_uuid = m.device_uuid
  WHERE m.rollout_id = ${d.param(1)} AND m.wave <= ${d.param(2)} AND m.status = 'pending'
  ORDER BY m.device_uuid`;

/** The event types a member's rollout status depends on: the install's outcome and the device's deferrals. */
export const EVIDENCE_EVENT_TYPES = ["EcuInstallationCompleted", "UpdateDeferred", "UpdateHoldReleased"];
/** At most this many of a member's latest such events. */
export const EVIDENCE_EVENTS_PER_DEVICE = 50;

/** Their events received since the rollout was created, oldest first. */
export const EVIDENCE_EVENTS = (d: Dialect) => `
  SELECT device_uuid, id, received_at, body FROM (
    SELECT e.device_uuid, e.id, e.received_at, e.body, e.seq,
      row_number() OVER (PARTITION BY e.device_uuid ORDER BY e.seq DESC) AS nth
    FROM rollout_devices m
    JOIN rollouts r ON r.id = m.rollout_id
    JOIN events e ON e.device_uuid = m.device_uuid AND e.received_at >= r.created_at
    WHERE m.rollout_id = ${d.param(1)} AND m.wave <= ${d.param(2)} AND m.status = 'pending'
      AND ${d.eventType("e.body")} IN (${EVIDENCE_EVENT_TYPES.map((t) => `'${t}'`).join(", ")})
  ) latest WHERE nth <= ${EVIDENCE_EVENTS_PER_DEVICE}
  ORDER BY seq`;

export interface EvidenceMemberRecord {
  uuid: string;
  wave: number | string;
  healthy_since: string | null;
  hold: string | null;
  reason: string | null;
  hardware_id: string | null;
  tags: string | null;
  current_target: string | null;
  status: string | null;
  last_seen: string | null;
  revoked_at: string | null;
  apps_body: string | null;
  apps_at: string | null;
}

export interface EvidenceEventRecord {
  device_uuid: string;
  id: string;
  received_at: string;
  body: string;
}

/** Joins the two evidence queries' rows into one record per member. */
export function toEvidence(members: EvidenceMemberRecord[], events: EvidenceEventRecord[]): RolloutEvidence[] {
  const byUuid = new Map<string, StoredEvent[]>();
  for (const e of events) {
    const event = storedJson<DeviceEvent | undefined>(e.body, undefined);
    if (!event) continue;
    let list = byUuid.get(e.device_uuid);
    if (!list) byUuid.set(e.device_uuid, (list = []));
    list.push({ id: e.id, deviceUuid: e.device_uuid, receivedAt: e.received_at, event });
  }
  return members.map((m) => ({
    uuid: m.uuid,
    wave: Number(m.wave),
    healthySince: m.healthy_since,
    hold: jsonColumn<RolloutHold | null>(m.hold, null),
    reason: m.reason,
    hardwareId: m.hardware_id,
    tags: jsonColumn<string[]>(m.tags, []),
    currentTarget: m.current_target,
    deviceStatus: m.status ?? "registered",
    lastSeen: m.last_seen,
    revokedAt: m.revoked_at,
    events: byUuid.get(m.uuid) ?? [],
    appsStates: m.apps_body === null ? null : (storedJson<AppsStates | undefined>(m.apps_body, undefined) ?? null),
    appsStatesAt: m.apps_at,
  }));
}

/**
 * Labels set (added or replaced), then removed. With `max`, a change that labelCountProblem
 * refuses throws TooManyLabelsError (the store calls this on the row it holds locked, so the check
 * and the write are one).
 */
export function mergeLabels(current: Record<string, string>, set: Record<string, string>, remove: string[], cap?: { uuid: string; max: number }): Record<string, string> {
  const over = cap && labelCountProblem(current, set, remove, cap.max);
  if (over) throw new TooManyLabelsError(cap.uuid, over.would, over.had, cap.max);
  const merged: Record<string, string> = { ...current, ...set };
  for (const k of remove) delete merged[k];
  return sortedKeys(merged);
}

/** Splits a list into slices of at most `size` (batched inserts and IN lists). */
export function chunks<T>(list: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

/** True when `err` is a unique-constraint violation of the one-active-rollout-per-version index. */
export function isActiveRolloutConflict(err: unknown): boolean {
  const e = err as { message?: string; constraint?: string; detail?: string };
  const text = `${e.message ?? ""} ${e.constraint ?? ""} ${e.detail ?? ""}`;
  return /rollouts_one_active|rollouts\.target_version/.test(text);
}
