/**
 * The gateway's one persistence interface. Two backends implement
 * it (bun:sqlite by default, PostgreSQL to scale out) and one contract suite
 * (`_contract.ts`) runs against both, so routes never know which is in use.
 *
 * @module
 */
import type {
  ApiRole,
  DeviceRow,
  DeviceStatus,
  FleetDevice,
  GroupRow,
  RolloutCount,
  RolloutDeviceRow,
  RolloutDeviceStatus,
  RolloutEventRow,
  RolloutHold,
  RolloutRow,
} from "../../lib/api/admin.ts";
import type { AppsStates, DeviceEvent } from "../../lib/api/index.ts";
import type { TufStorage } from "../ota/storage.ts";
import type { SchemaMigrated } from "./_migrations.ts";

/** A registered device as the gateway keeps it: one declaration, shared with the admin API. */
export type { DeviceRow } from "../../lib/api/admin.ts";
/** Groups and rollouts as kept and as the admin API shows them: declared once, in lib/api/admin.ts. */
export type { GroupRow, RolloutCount, RolloutDeviceRow, RolloutDeviceStatus, RolloutEventRow, RolloutHold, RolloutRow } from "../../lib/api/admin.ts";

export type NewDevice = Pick<DeviceRow, "uuid" | "name" | "hardwareId" | "factory" | "tags" | "certSerial"> & {
  createdAt?: string;
  apps?: string[] | null;
  /** The device may change its tags with x-ats-tags (its registration token allowed it); default false. */
  tagsFromDevice?: boolean;
  /**
   * What the caller saw before it decided to write: null, that the uuid was not registered; a
   * serial, that the device's certificate was that one. When the row is no longer so at the
   * write, putDevice writes nothing and throws DeviceRegisteredMeanwhileError. Undefined: written as is.
   */
  replaces?: string | null;
  /**
   * The id of the registration token the registration spends a use of. The use is claimed in
   * the same transaction as the write: a write refused (revoked, registered meanwhile) gives it
   * back, and a token with no use left writes nothing and throws TokenUsedUpError.
   */
  spendsUseOf?: string;
  /** The sha256 (hex) of the public key the certificate was issued for (Store.deviceKeySha256). */
  keySha256?: string;
};

/** What a check-in tells us about a device; written coalesced, not per request. */
export interface Sighting {
  uuid: string;
  at: string;
  /** The tags the device reports (x-ats-tags): its tags only where `tagsFromDevice` is true; every device's reported tags. */
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
  /** Uuids from / up to this one, both included (a page of listDevices is such a range). */
  uuidFrom?: string;
  uuidTo?: string;
  /** Uuids after this one, not included (the next page of a list by uuid). */
  uuidAfter?: string;
  /**
   * A tag among the device's, or among those it reports following (a tag its token overrode, before
   * 2026-12-06); the count says how many are listed only for the latter (`reportedOnly`).
   */
  tag?: string;
  hardwareId?: string;
  target?: string;
  status?: DeviceStatus;
  /** Fleet queries the device must also match, all of them (labels, a group: the dashboard's filters). */
  fleet?: FleetQuery[];
  /** Last seen at or after / before this ISO time (never seen counts as before). */
  seenSince?: string;
  unseenSince?: string;
  /** Devices last seen before this ISO time are "offline" ("never-seen": registered before it, never seen). */
  offlineBefore: string;
  sort?: "name" | "uuid" | "lastSeen" | "createdAt" | "hardwareId" | "target" | "status";
  desc?: boolean;
  limit?: number;
  offset?: number;
  /**
   * Count the matches (default true). A list paged by `uuidAfter` leaves it out: counting the rest
   * of the fleet at every page would cost a scan per page, N²/page-size rows for the whole listing.
   */
  count?: boolean;
  /** Count the revoked matches too (`revoked`): a count(revoked_at) the index cannot answer alone, so only when shown. */
  countRevoked?: boolean;
}

/** The fleet at a glance (fleetSummary). */
export interface FleetCounts {
  total: number;
  byStatus: Partial<Record<DeviceStatus, number>>;
  versions: { target: string | null; devices: number }[];
  recentFailures: FleetDevice[];
}

/**
 * Which devices a dynamic group or a rollout audience means: every field given must match (AND).
 * Revoked devices never match. Parsed from text by gateway/fleet/query.ts.
 */
export interface FleetQuery {
  /** Each label key must have exactly this value. */
  labels?: Record<string, string>;
  /** The device must carry every one of these tags. */
  tags?: string[];
  hardwareId?: string;
  /** Part of the device name, case-insensitive. */
  nameContains?: string;
  /** A member of this static group. */
  group?: string;
}

/** Which members of a rollout: `held`, only those with a hold; `waiting`, only pending ones with a reason (what they wait for). */
export interface RolloutDeviceFilter {
  wave?: number;
  status?: RolloutDeviceStatus;
  held?: boolean;
  waiting?: boolean;
}

/** One member of a new rollout and the (0-based) wave it belongs to. */
export interface RolloutMember {
  uuid: string;
  wave: number;
}

/** A rollout as createRollout takes it: acknowledgedFailures defaults to 0. */
export type NewRollout = Omit<RolloutRow, "acknowledgedFailures"> & { acknowledgedFailures?: number };

/**
 * What may change on a rollout: everything but its id, revision and creation time. `ifFailed` is
 * a condition, not a field: the patch applies only if the rollout has that many failed members when
 * it is written. A resume accepts the failures it counted and names; the tick records failures
 * while halted without moving the revision, so one recorded between the count and the write would
 * otherwise be left unaccepted and halt the rollout again at once.
 */
export type RolloutPatch = Partial<Omit<RolloutRow, "id" | "revision" | "createdAt">> & { ifFailed?: number };

/** A change to one rollout member; fields left out stay as they are, `null` clears. */
export interface RolloutDeviceChange {
  uuid: string;
  status?: RolloutDeviceStatus;
  reason?: string | null;
  healthySince?: string | null;
  hold?: RolloutHold | null;
  /** Default: now. */
  updatedAt?: string;
}

/**
 * What the rollout engine decides a pending member's status from: the device row's facts, its install
 * outcomes and deferrals (EcuInstallationCompleted, UpdateDeferred, UpdateHoldReleased) received since
 * the rollout was created (the latest 50, oldest first) and its latest app states with when they arrived.
 */
export interface RolloutEvidence {
  uuid: string;
  wave: number;
  /** The member's own row: since when it has been healthy, its last deferral, why it still waits (pending) or failed. */
  healthySince: string | null;
  hold: RolloutHold | null;
  reason: string | null;
  /** The device's hardware id and tags: which of the version's targets it can select (lib/tuf/select-target.ts). */
  hardwareId: string | null;
  tags: string[];
  currentTarget: string | null;
  /** The device's update status column (registered, updating, up-to-date, failed, rolled-back, cancelled). */
  deviceStatus: string;
  lastSeen: string | null;
  revokedAt: string | null;
  events: StoredEvent[];
  appsStates: AppsStates | null;
  appsStatesAt: string | null;
}

/** Thrown when a group of that name exists already. */
export class GroupExistsError extends Error {
  override name = "GroupExistsError";
  constructor(name: string) {
    super(`Cannot create group "${name}": a group of that name exists`);
  }
}

/** Thrown by createRollout when an active rollout (running, paused or halted) already releases that version. */
export class RolloutConflictError extends Error {
  override name = "RolloutConflictError";
  constructor(version: string) {
    super(`Cannot create a rollout of version "${version}": an active rollout of it exists (cancel it first)`);
  }
}

/**
 * Thrown by setDeviceLabels when the change would leave the device more than `max` labels and
 * more than it had (a change that adds none, or brings a device over the cap under it, passes).
 * Checked in the write's own transaction, the device's row locked: two changes racing cannot
 * both pass a cap that each alone would keep.
 */
export class TooManyLabelsError extends Error {
  override name = "TooManyLabelsError";
  constructor(uuid: string, would: number, had: number, max: number) {
    super(`Device "${uuid}" would have ${would} labels: at most ${max} a device (it has ${had}; remove some first)`);
  }
}

/**
 * Thrown by putDevice when the uuid was registered (or registered again) since the caller read it
 * (NewDevice.replaces): of two registrations racing for one uuid, the second would otherwise
 * replace the first's certificate after the first was answered 201 with it.
 */
export class DeviceRegisteredMeanwhileError extends Error {
  override name = "DeviceRegisteredMeanwhileError";
  constructor(uuid: string) {
    super(`Registration refused: device "${uuid}" was registered by another request meanwhile (its certificate is not the one this request presented or expected)`);
  }
}

/** Thrown by putDevice when its registration token (NewDevice.spendsUseOf) has no use left, was revoked or has expired. */
export class TokenUsedUpError extends Error {
  override name = "TokenUsedUpError";
  constructor(id: string) {
    super(`Registration token ${id} has been used up, revoked or has expired`);
  }
}

/** Thrown when registering a uuid that was revoked: a revoked identity stays revoked. */
export class DeviceRevokedError extends Error {
  override name = "DeviceRevokedError";
  constructor(uuid: string) {
    super(`Cannot register device "${uuid}": it was revoked`);
  }
}

/** The `Retry-After` (seconds) of a 503 for a write the store cannot take right now. */
export const STORE_RETRY_AFTER_S = 5;

/**
 * Thrown by a write the store cannot take right now (SQLite: its writer thread died and is being
 * restarted; either store: too many writes wait for the database, EventQueueFullError and
 * StateWritesFullError in ./_waiting-writes.ts).
 * The write may or may not have committed; retrying it is safe (events are deduplicated by id,
 * the other device writes are upserts), so the gateway answers 503 with `Retry-After:
 * retryAfterSeconds`.
 */
export class StoreUnavailableError extends Error {
  override name = "StoreUnavailableError";
  constructor(
    message: string,
    readonly retryAfterSeconds = STORE_RETRY_AFTER_S,
  ) {
    super(message);
  }
}

export interface Store {
  readonly kind: "sqlite" | "postgres";
  /** What opening the database changed in its schema (undefined: nothing), for the start log. */
  readonly migrated?: SchemaMigrated | undefined;
  close(): Promise<void>;

  /** Creates a device, or replaces the certificate of a non-revoked one (re-registration). */
  putDevice(device: NewDevice): Promise<DeviceRow>;
  getDevice(uuid: string): Promise<DeviceRow | undefined>;
  /**
   * The rows of those of `uuids` that are registered, by uuid, in one read: the device cache's
   * misses of one event-loop turn (gateway/devices/cache.ts). On SQLite one statement reads them all
   * (a lookup after another connection's commit re-reads its B-tree's upper pages, which a batch
   * shares); on PostgreSQL one round trip.
   */
  getDevices(uuids: readonly string[]): Promise<Map<string, DeviceRow>>;
  /**
   * The sha256 of the public key device `uuid`'s current certificate was issued for (null: not
   * recorded, a registration before it was; undefined: no such device). Kept out of DeviceRow,
   * which the admin API returns as it is.
   */
  deviceKeySha256(uuid: string): Promise<string | null | undefined>;
  listDevices(opts?: ListOptions): Promise<DeviceRow[]>;
  countDevices(): Promise<number>;
  /**
   * The target names the devices not revoked last reported running (each once): what a publish
   * must number above, as a restored gateway may lack the targets its devices run.
   */
  runningTargets(): Promise<string[]>;
  /** Marks a device revoked; false when the uuid is unknown. Idempotent. */
  revokeDevice(uuid: string, at: string): Promise<boolean>;
  /** Replaces a device's tags; undefined when the uuid is unknown. */
  setDeviceTags(uuid: string, tags: string[]): Promise<DeviceRow | undefined>;
  /**
   * Sets labels (adding or replacing keys) and removes keys, in one write; undefined when the uuid
   * is unknown. With `max`, throws TooManyLabelsError rather than write past it (mergeLabels).
   * Devices never change labels: only the admin API calls this.
   */
  setDeviceLabels(uuid: string, set: Record<string, string>, remove: string[], max?: number): Promise<DeviceRow | undefined>;
  /** The uuids of the non-revoked devices matching every field of `q`, sorted. */
  queryDevices(q: FleetQuery): Promise<string[]>;
  /**
   * For each of `queries`, whether the device matches it (queryDevices would list it), in one read
   * of its row (a statement per 500 queries); all false for an unknown or revoked device.
   */
  queriesMatching(uuid: string, queries: FleetQuery[]): Promise<boolean[]>;
  /** Which of these uuids are registered devices (revoked ones included, with when), sorted by uuid, each once. */
  knownDevices(uuids: string[]): Promise<{ uuid: string; revokedAt: string | null }[]>;
  /** Applies many check-in sightings in one write. */
  recordSightings(batch: Sighting[]): Promise<void>;

  /**
   * One page of the devices a search matches, with their status; how many it matches (unless
   * `count` is false), how many of those are revoked (with `countRevoked`) and, searched by a tag,
   * how many not revoked are listed only for the tag they report following (`reportedOnly`: their
   * tags, which rollouts and groups by the tag read, lack it).
   */
  searchDevices(search: DeviceSearch): Promise<{ devices: FleetDevice[]; total?: number; revoked?: number; reportedOnly?: number }>;
  /** Devices by status, devices per target, the latest failures (up to `failures`). */
  fleetSummary(offlineBefore: string, failures?: number): Promise<FleetCounts>;

  /** Stores events idempotently by id; resolves only once they are durable. Returns how many were new. */
  appendEvents(uuid: string, events: DeviceEvent[]): Promise<number>;
  /**
   * A device's newest `limit` events (at most and by default 10,000) in arrival order: past the
   * limit its oldest are left out, not the ones an operator reads its history for.
   */
  listEvents(uuid: string, opts?: { limit?: number }): Promise<StoredEvent[]>;
  countEvents(): Promise<number>;
  /**
   * Deletes up to `limit` of the oldest events received before `before` (ISO time), from among the
   * `limit` oldest by arrival that are not stamped in the future; how many it deleted. None: nothing
   * older is left at the front (the gateway's event retention calls it again until then,
   * gateway/event-retention.ts); fewer than `limit` may still leave some behind newer ones.
   */
  pruneEvents(before: string, limit: number): Promise<number>;

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
   * Takes or renews the lease `name` for `holder` for `ttlMs`: true when `holder` holds it
   * afterwards (it was free, expired, or already `holder`'s). Of concurrent claims on a free
   * lease exactly one wins. Replicas use it so a singleton job runs on one of them at a time.
   * Timed by the database's clock, never the caller's: replicas whose clocks differ agree on it.
   */
  tryLease(name: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Gives the lease up at once if `holder` holds it, so another replica can take it without waiting. */
  releaseLease(name: string, holder: string): Promise<void>;
  /** The database's clock, for replicas to compare theirs with (clock-skew.ts); PostgreSQL only (SQLite is one host). */
  databaseClock?(): Promise<Date>;

  /** @throws {GroupExistsError} If a group of that name exists. */
  createGroup(row: GroupRow): Promise<void>;
  getGroup(name: string): Promise<GroupRow | undefined>;
  /**
   * Every group, by name, in one read that counts nothing: a device's page asks which it is in at
   * each load, and GET /admin/groups counts each group's audience (revoked members left out) itself.
   */
  listGroups(): Promise<GroupRow[]>;
  /** Deletes a group and its member list; false when unknown. */
  deleteGroup(name: string): Promise<boolean>;
  /** Adds registered devices to a static group (unknown uuids are skipped); returns how many were new. */
  addGroupMembers(name: string, uuids: string[]): Promise<number>;
  /** Returns how many were members. */
  removeGroupMembers(name: string, uuids: string[]): Promise<number>;
  /** A static group's members, sorted. */
  listGroupMembers(name: string): Promise<string[]>;

  /**
   * Creates a rollout, its members and `events` in one transaction (members inserted in batches).
   * @throws {RolloutConflictError} If an active rollout of the same target version exists.
   */
  createRollout(row: NewRollout, members: RolloutMember[], events?: Omit<RolloutEventRow, "id">[]): Promise<void>;
  getRollout(id: string): Promise<RolloutRow | undefined>;
  /** Newest first; `active`: running, paused or halted only. */
  listRollouts(opts?: { active?: boolean; limit?: number }): Promise<RolloutRow[]>;
  /** Running, paused and halted rollouts (they decide who sees their target). */
  activeRollouts(): Promise<RolloutRow[]>;
  /** Per target version its newest rollout, unless it completed: those that gate what devices see (rollouts/view-cache.ts), by id. */
  gatingRollouts(): Promise<RolloutRow[]>;
  /**
   * Applies `patch` only if the rollout is still at `expectedRevision`, and bumps the revision (and
   * updatedAt: the patch's or now), and appends `events` in the same transaction; with
   * `patch.ifFailed`, only if it has that many failed members then. undefined: someone else changed
   * it first, or its failures (or it does not exist): nothing was written, events neither.
   */
  updateRollout(id: string, expectedRevision: number, patch: RolloutPatch, events?: Omit<RolloutEventRow, "id">[]): Promise<RolloutRow | undefined>;
  /** Every member and its wave (100,000 rows is fine). */
  rolloutMembers(id: string): Promise<RolloutMember[]>;
  /**
   * Members, by uuid, filtered; `held`: only those with a hold; `waiting`: only pending ones with a
   * reason (what they wait for); `after`: keyset paging by uuid.
   */
  rolloutDeviceStates(id: string, opts?: RolloutDeviceFilter & { limit?: number; after?: string }): Promise<RolloutDeviceRow[]>;
  /** How many members rolloutDeviceStates would answer with `opts` and no limit (a count, no rows read out). */
  countRolloutDevices(id: string, opts?: RolloutDeviceFilter): Promise<number>;
  /**
   * Applies many member changes in one write, and appends `events` (the rollout events of these
   * verdicts) in the same transaction, so a failure cannot keep the one and lose the other. Only
   * pending members change, and a device's event is appended only if its member changed: two
   * replicas judging the same members (a signer lease changing hands) neither overwrite a settled
   * verdict nor record it twice. With
   * `revision`: only if the rollout is still at that revision (the tick judged them by a state an
   * operator's pause may have changed meanwhile); false: it was not, and nothing was written, events neither.
   */
  updateRolloutDevices(id: string, changes: RolloutDeviceChange[], opts?: { revision?: number; events?: Omit<RolloutEventRow, "id">[] }): Promise<boolean>;
  /** Members per wave and status (only the pairs that exist), by wave then status. */
  rolloutCounts(id: string): Promise<RolloutCount[]>;
  /**
   * Newest first; default the latest 100. `device`: false, only the rollout's own transitions
   * (no device uuid); true, only device events.
   */
  listRolloutEvents(id: string, opts?: { limit?: number; device?: boolean }): Promise<RolloutEventRow[]>;
  /** Pending members of waves 0..maxWave with what their status depends on (see {@link RolloutEvidence}). */
  pendingRolloutEvidence(id: string, maxWave: number): Promise<RolloutEvidence[]>;

  /** Stores `value` under `key` unless a value is there already; returns the stored value. */
  claimMeta(key: string, value: string): Promise<string>;
  /** The value stored under `key` (by {@link claimMeta}), or undefined. */
  readMeta(key: string): Promise<string | undefined>;
  /**
   * Removes `key` if it still holds `value` (a claim given up on purpose: `serve --registry-change`),
   * so the next {@link claimMeta} stores anew; false when it holds another value or none.
   */
  forgetMeta(key: string, value: string): Promise<boolean>;

  /** Every signed version of every TUF role, for gateway/ota's TufRepo. */
  readonly tuf: TufStorage;
}
