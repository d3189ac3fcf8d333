/**
 * The gateway's one persistence interface (STYLE §7). Two backends implement
 * it (bun:sqlite by default, PostgreSQL to scale out) and one contract suite
 * (`_contract.ts`) runs against both, so routes never know which is in use.
 *
 * @module
 */
import type { AppsStates, DeviceEvent } from "../../lib/api/index.ts";
import type { TufStorage } from "../ota/storage.ts";

/** A registered device as the gateway keeps it. */
export interface DeviceRow {
  uuid: string;
  name: string;
  hardwareId: string;
  factory: string;
  tags: string[];
  /** Serial (hex, upper case) of the device's current client certificate. */
  certSerial: string;
  createdAt: string;
  lastSeen: string | null;
  currentTarget: string | null;
  apps: string[] | null;
  revokedAt: string | null;
}

export type NewDevice = Pick<DeviceRow, "uuid" | "name" | "hardwareId" | "factory" | "tags" | "certSerial"> & {
  createdAt?: string;
  apps?: string[] | null;
};

/** What a check-in tells us about a device; written coalesced, not per request. */
export interface Sighting {
  uuid: string;
  at: string;
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
  tags: string[];
  hardwareId: string | null;
  createdAt: string;
  expiresAt: string;
  uses: number;
}

export interface ListOptions {
  limit?: number;
  /** Keyset pagination: rows after this key (uuid for devices). */
  after?: string;
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
  /** Applies many check-in sightings in one write. */
  recordSightings(batch: Sighting[]): Promise<void>;

  /** Stores events idempotently by id; resolves only once they are durable. Returns how many were new. */
  appendEvents(uuid: string, events: DeviceEvent[]): Promise<number>;
  listEvents(uuid: string, opts?: { limit?: number }): Promise<StoredEvent[]>;
  countEvents(): Promise<number>;

  putAppsStates(uuid: string, states: AppsStates): Promise<void>;
  getAppsStates(uuid: string): Promise<AppsStates | undefined>;

  putSystemInfo(uuid: string, kind: SystemInfoKind, value: unknown): Promise<void>;
  getSystemInfo(uuid: string): Promise<Partial<Record<SystemInfoKind, unknown>>>;

  createRegistrationToken(row: Omit<RegistrationTokenRow, "uses">): Promise<void>;
  listRegistrationTokens(): Promise<RegistrationTokenRow[]>;
  getRegistrationTokenByHash(secretHash: string): Promise<RegistrationTokenRow | undefined>;
  countTokenUse(id: string): Promise<void>;

  /** Stores `value` under `key` unless a value is there already; returns the stored value. */
  claimMeta(key: string, value: string): Promise<string>;

  /** Every signed version of every TUF role, for gateway/ota's TufRepo. */
  readonly tuf: TufStorage;
}
