/**
 * The gateway's one persistence interface. Two backends implement
 * it (bun:sqlite by default, PostgreSQL to scale out) and one contract suite
 * (`_contract.ts`) runs against both, so routes never know which is in use.
 *
 * @module
 */
import type { ApiRole, DeviceRow, DeviceStatus, FleetDevice } from "../../lib/api/admin.ts";
import type { AppsStates, DeviceEvent } from "../../lib/api/index.ts";
import type { TufStorage } from "../ota/storage.ts";

/** A registered device as the gateway keeps it: one declaration, shared with the admin API. */
export type { DeviceRow } from "../../lib/api/admin.ts";

export type NewDevice = Pick<DeviceRow, "uuid" | "name" | "hardwareId" | "factory" | "tags" | "certSerial"> & {
  createdAt?: string;
  apps?: string[] | null;
  /** The device may change its tags with x-ats-tags (its registration token allowed it); default false. */
  tagsFromDevice?: boolean;
};

/** What a check-in tells us about a device; written coalesced, not per request. */
export interface Sighting {
  uuid: string;
  at: string;
  /** Applied only to devices whose `tagsFromDevice` is true. */
  tags?: string[];
  currentTarget?: string;
  apps?: string[];
}

export interface StoredEvent {
  id: string;
  deviceUuid: string;
  receivedAt: string;
  event: DeviceEvent;
}

export type SystemInfoKind = "hardware" | "network" | "config";

/** A registration token: only the sha256 of its secret is kept. */
export interface RegistrationTokenRow {
  id: string;
  secretHash: string;
  name: string | null;
  tags: string[];
  hardwareId: string | null;
  createdAt: string;
  expiresAt: string;
  uses: number;
  /** null: unlimited (tokens made before use limits existed). */
  maxUses: number | null;
  /** Devices registered with it choose their tags and may change them with x-ats-tags. */
  allowDeviceTags: boolean;
  revokedAt: string | null;
}

export type NewRegistrationToken = Omit<RegistrationTokenRow, "uses" | "revokedAt">;

/** A publish or admin token (lib/api/admin.ts TOKEN_ROLES): only the sha256 of its secret is kept. */
export interface ApiTokenRow {
  id: string;
  secretHash: string;
  role: ApiRole;
  name: string | null;
  createdAt: string;
  expiresAt: string;
  revokedAt: string | null;
}

export interface ListOptions {
  limit?: number;
  /** Keyset pagination: rows after this key (uuid for devices). */
  after?: string;
}

/** What the dashboard's device list asks for (searchDevices); strings are matched as given. */
export interface DeviceSearch {
  /** Part of the name or uuid, case-insensitive. */
  text?: string;
  uuid?: string;
  tag?: string;
  hardwareId?: string;
  target?: string;
  status?: DeviceStatus;
  /** Last seen at or after / before this ISO time (never seen counts as before). */
  seenSince?: string;
  unseenSince?: string;
  /** Devices last seen before this ISO time are "offline". */
  offlineBefore: string;
  sort?: "name" | "uuid" | "lastSeen" | "createdAt" | "hardwareId" | "target" | "status";
  desc?: boolean;
  limit?: number;
  offset?: number;
}

/** The fleet at a glance (fleetSummary). */
export interface FleetCounts {
  total: number;
  byStatus: Partial<Record<DeviceStatus, number>>;
  versions: { target: string | null; devices: number }[];
  recentFailures: FleetDevice[];
}

/** Thrown when registering a uuid that was revoked: a revoked identity stays revoked. */
export class DeviceRevokedError extends Error {
  override name = "DeviceRevokedError";
  constructor(uuid: string) {
    super(`Cannot register device "${uuid}": it was revoked`);
  }
}

export interface Store {
  readonly kind: "sqlite" | "postgres";
  close(): Promise<void>;

  /** Creates a device, or replaces the certificate of a non-revoked one (re-registration). */
  putDevice(device: NewDevice): Promise<DeviceRow>;
  getDevice(uuid: string): Promise<DeviceRow | undefined>;
  listDevices(opts?: ListOptions): Promise<DeviceRow[]>;
  countDevices(): Promise<number>;
  /** Marks a device revoked; false when the uuid is unknown. Idempotent. */
  revokeDevice(uuid: string, at: string): Promise<boolean>;
  /** Replaces a device's tags; undefined when the uuid is unknown. */
  setDeviceTags(uuid: string, tags: string[]): Promise<DeviceRow | undefined>;
  /** Applies many check-in sightings in one write. */
  recordSightings(batch: Sighting[]): Promise<void>;

  /** One page of devices matching `search`, with their status, and how many match in all. */
  searchDevices(search: DeviceSearch): Promise<{ devices: FleetDevice[]; total: number }>;
  /** Devices by status, devices per target, the latest failures (up to `failures`). */
  fleetSummary(offlineBefore: string, failures?: number): Promise<FleetCounts>;

  /** Stores events idempotently by id; resolves only once they are durable. Returns how many were new. */
  appendEvents(uuid: string, events: DeviceEvent[]): Promise<number>;
  listEvents(uuid: string, opts?: { limit?: number }): Promise<StoredEvent[]>;
  countEvents(): Promise<number>;

  putAppsStates(uuid: string, states: AppsStates): Promise<void>;
  getAppsStates(uuid: string): Promise<AppsStates | undefined>;

  putSystemInfo(uuid: string, kind: SystemInfoKind, value: unknown): Promise<void>;
  getSystemInfo(uuid: string): Promise<Partial<Record<SystemInfoKind, unknown>>>;

  createRegistrationToken(row: NewRegistrationToken): Promise<void>;
  listRegistrationTokens(): Promise<RegistrationTokenRow[]>;
  getRegistrationTokenByHash(secretHash: string): Promise<RegistrationTokenRow | undefined>;
  /**
   * Counts one use, atomically: true only if the token is unrevoked, unexpired at `now` and
   * under its use limit. Of concurrent claims for the last use, exactly one wins.
   */
  claimTokenUse(id: string, now: string): Promise<boolean>;
  /** Marks a registration token revoked; false when the id is unknown. Idempotent. */
  revokeRegistrationToken(id: string, at: string): Promise<boolean>;

  createApiToken(row: Omit<ApiTokenRow, "revokedAt">): Promise<void>;
  listApiTokens(): Promise<ApiTokenRow[]>;
  getApiTokenByHash(secretHash: string): Promise<ApiTokenRow | undefined>;
  getApiToken(id: string): Promise<ApiTokenRow | undefined>;
  /** Marks an API token revoked; false when the id is unknown. Idempotent. */
  revokeApiToken(id: string, at: string): Promise<boolean>;

  /**
   * Takes or renews the lease `name` for `holder` until `now + ttlMs`: true when `holder` holds it
   * afterwards (it was free, expired, or already `holder`'s). Of concurrent claims on a free
   * lease exactly one wins. Replicas use it so a singleton job runs on one of them at a time.
   */
  tryLease(name: string, holder: string, ttlMs: number, now?: Date): Promise<boolean>;
  /** Gives the lease up at once if `holder` holds it, so another replica can take it without waiting. */
  releaseLease(name: string, holder: string): Promise<void>;

  /** Stores `value` under `key` unless a value is there already; returns the stored value. */
  claimMeta(key: string, value: string): Promise<string>;

  /** Every signed version of every TUF role, for gateway/ota's TufRepo. */
  readonly tuf: TufStorage;
}
