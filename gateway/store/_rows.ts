/** Row <-> object mapping shared by both backends (column names are the same). */
import type { ApiRole } from "../../lib/api/admin.ts";
import { jsonDepth } from "../../lib/api/json-body.ts";
import type { ApiTokenRow, DeviceRow, NewDevice, RegistrationTokenRow } from "./types.ts";

export interface DeviceRecord {
  uuid: string;
  name: string;
  hardware_id: string;
  factory: string;
  tags: string;
  cert_serial: string;
  created_at: string;
  last_seen: string | null;
  current_target: string | null;
  apps: string | null;
  revoked_at: string | null;
  tags_from_device: number | string;
  /** JSON text (SQLite) or an object (PostgreSQL jsonb); undefined only in rows selected without it. */
  labels?: string | Record<string, string> | null;
}

/** A JSON column as either dialect returns it: text (SQLite) or already parsed (PostgreSQL jsonb). */
export const jsonColumn = <T>(v: string | T | null | undefined, empty: T): T =>
  v === null || v === undefined ? empty : typeof v === "string" ? (JSON.parse(v) as T) : v;

/** An object with its keys in code-point order (PostgreSQL's jsonb orders keys by length first). */
export const sortedKeys = <T>(o: Record<string, T>): Record<string, T> =>
  Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

export const toDevice = (r: DeviceRecord): DeviceRow => ({
  uuid: r.uuid,
  name: r.name,
  hardwareId: r.hardware_id,
  factory: r.factory,
  tags: JSON.parse(r.tags),
  labels: sortedKeys(jsonColumn<Record<string, string>>(r.labels, {})),
  tagsFromDevice: Number(r.tags_from_device) === 1,
  certSerial: r.cert_serial,
  createdAt: r.created_at,
  lastSeen: r.last_seen,
  currentTarget: r.current_target,
  apps: r.apps === null ? null : JSON.parse(r.apps),
  revokedAt: r.revoked_at,
});

export interface TokenRecord {
  id: string;
  secret_hash: string;
  tags: string;
  hardware_id: string | null;
  created_at: string;
  expires_at: string;
  uses: number | string;
  name: string | null;
  max_uses: number | string | null;
  allow_device_tags: number | string;
  revoked_at: string | null;
}

/**
 * putDevice's parameters in the order of both stores' INSERT (uuid, name, hardware_id, factory,
 * tags, cert_serial, created_at, apps, tags_from_device), then `replaces` when it names a serial
 * (the tenth, for {@link replacesSql}).
 */
export const newDeviceParams = (d: NewDevice): (string | number | null)[] => [
  d.uuid,
  d.name,
  d.hardwareId,
  d.factory,
  JSON.stringify(d.tags),
  d.certSerial,
  d.createdAt ?? new Date().toISOString(),
  d.apps ? JSON.stringify(d.apps) : null,
  d.tagsFromDevice ? 1 : 0,
  d.keySha256 ?? null,
  ...(typeof d.replaces === "string" ? [d.replaces] : []),
];

/**
 * The condition putDevice adds to its upsert's update for NewDevice.replaces: null, the uuid must
 * be new (a row there is not updated); a serial (bound at `param`), the row must still hold it.
 */
export const replacesSql = (replaces: string | null | undefined, param: string): string =>
  replaces === undefined ? "" : replaces === null ? " AND 1 = 0" : ` AND devices.cert_serial = ${param}`;

export const toToken = (r: TokenRecord): RegistrationTokenRow => ({
  id: r.id,
  secretHash: r.secret_hash,
  tags: JSON.parse(r.tags),
  hardwareId: r.hardware_id,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  uses: Number(r.uses),
  name: r.name,
  maxUses: r.max_uses === null ? null : Number(r.max_uses),
  allowDeviceTags: Number(r.allow_device_tags) === 1,
  revokedAt: r.revoked_at,
});

export interface ApiTokenRecord {
  id: string;
  secret_hash: string;
  role: string;
  name: string | null;
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
}

export const toApiToken = (r: ApiTokenRecord): ApiTokenRow => ({
  id: r.id,
  secretHash: r.secret_hash,
  role: r.role as ApiRole,
  name: r.name,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  revokedAt: r.revoked_at,
});

export const clampLimit = (n: number | undefined, max = 1000) => Math.max(1, Math.min(n ?? max, max));

/**
 * A device event as stored, on both backends alike. A string holding U+0000 or half of a surrogate
 * pair (a device's error text cut mid-character) is valid JSON, but PostgreSQL's jsonb refuses it:
 * the device's POST /events failed with 500, and its fioup sent the same batch again for ever,
 * none of its later events stored. Such characters are stored as U+FFFD instead.
 */
export function eventBody(e: unknown): string {
  const text = JSON.stringify(e);
  return text.includes("\\u0000") || LONE_SURROGATE_ESCAPE.test(text) ? JSON.stringify(e, storableString) : text;
}

/** How JSON.stringify writes a lone surrogate (a paired one is written as itself). */
const LONE_SURROGATE_ESCAPE = /\\ud[89a-f]/i;
const storableString = (_key: string, v: unknown) => (typeof v === "string" ? v.replaceAll("\0", "\uFFFD").toWellFormed() : v);

/** Device-supplied JSON read back deeper than this is not returned (older rows predate the intake cap). */
export const MAX_STORED_DEPTH = 64;
export const STORED_TOO_DEEP = `[not shown: stored value nested deeper than ${MAX_STORED_DEPTH} levels]`;

/**
 * Parses device-supplied JSON text from the database, or returns `tooDeep` when it nests
 * deeper than {@link MAX_STORED_DEPTH}: such a value would cost seconds to serialise and
 * overflow the stack of every reader after us (the admin API, the CLI).
 */
export function storedJson<T = unknown>(text: string, tooDeep: T | string = STORED_TOO_DEEP): T {
  if (jsonDepth(Buffer.from(text), MAX_STORED_DEPTH) > MAX_STORED_DEPTH) return tooDeep as T;
  return JSON.parse(text) as T;
}
