/**
 * Bodies of the gateway's admin API (`/admin/...`), shared by the routes
 * (which validate requests with them) and by the one admin client,
 * `lib/api/admin-client.ts` (which checks every answer with them). A field
 * changes here, once, for both sides.
 *
 * @module
 */
import { Type, type Static } from "@sinclair/typebox";
import { AppsStates, DeviceEvent, HOLD_KINDS } from "./device.ts";
import { HardwareId, Tag, TARGET_NAME_PATTERN, TargetEntry } from "./target.ts";
import { DURATION_PATTERN, MAX_DURATION_SECONDS } from "./duration.ts";

export const Tags = Type.Array(Tag, { maxItems: 32 });

/** A registered device as the gateway keeps it (the store's row and the admin API's answer). */
export const DeviceRow = Type.Object({
  uuid: Type.String(),
  name: Type.String(),
  hardwareId: Type.String(),
  factory: Type.String(),
  tags: Type.Array(Type.String()),
  /** key=value labels set by the admin (`gateway devices label`); a device never changes them. */
  labels: Type.Record(Type.String(), Type.String()),
  /** True when the registration token let the device choose its tags (x-ats-tags updates them). */
  tagsFromDevice: Type.Boolean(),
  /** Serial (hex, upper case) of the device's current client certificate. */
  certSerial: Type.String(),
  createdAt: Type.String(),
  lastSeen: Type.Union([Type.String(), Type.Null()]),
  currentTarget: Type.Union([Type.String(), Type.Null()]),
  apps: Type.Union([Type.Array(Type.String()), Type.Null()]),
  revokedAt: Type.Union([Type.String(), Type.Null()]),
});
export type DeviceRow = Static<typeof DeviceRow>;

/** GET /admin/devices?limit&after */
export const DeviceList = Type.Object({ devices: Type.Array(DeviceRow), next: Type.Optional(Type.String()) });
export type DeviceList = Static<typeof DeviceList>;

/** GET /admin/devices/:uuid */
export const DeviceDetail = Type.Intersect([
  DeviceRow,
  Type.Object({
    appsStates: Type.Union([AppsStates, Type.Null()]),
    systemInfo: Type.Record(Type.String(), Type.Unknown()),
  }),
]);
export type DeviceDetail = Static<typeof DeviceDetail>;

/** One update of a device: its events grouped by correlation id. */
export const Update = Type.Object({
  correlationId: Type.String(),
  targetName: Type.Optional(Type.String()),
  version: Type.Optional(Type.String()),
  events: Type.Array(DeviceEvent),
  /**
   * When the gateway stored each of `events`, in the same order, on its own clock: an event's
   * deviceTime is the device's clock, which may be wrong (a device without a battery-backed clock
   * reports 1970 until NTP sets it).
   */
  receivedAt: Type.Optional(Type.Array(Type.String())),
  success: Type.Optional(Type.Boolean()),
});
export type Update = Static<typeof Update>;

/** GET /admin/devices/:uuid/updates */
export const UpdateList = Type.Object({ updates: Type.Array(Update) });
export type UpdateList = Static<typeof UpdateList>;

/** PUT /admin/devices/:uuid/tags: the device's tags from now on (answers the device row). */
export const DeviceTagsRequest = Type.Object({ tags: Tags });
export type DeviceTagsRequest = Static<typeof DeviceTagsRequest>;

/**
 * What a token may do. `registration`: register devices (POST /devices) and
 * nothing else. `publish`: push images to the factory's registry
 * repositories, read the targets and add targets. `admin`: everything else
 * too (devices, tokens, targets, key rotation) except rotating the root key,
 * which needs the offline root key. `viewer`: read-only: every GET under
 * /admin (the dashboard's read-only sign-in), pull from the registry.
 */
export const TOKEN_ROLES = ["registration", "publish", "admin", "viewer"] as const;
export type TokenRole = (typeof TOKEN_ROLES)[number];
export type ApiRole = Exclude<TokenRole, "registration">;

/** A lifetime: "30d", "12h", "90m", "3600s", "2w" or seconds (at most 50 years). */
const Duration = Type.Union([Type.String({ pattern: DURATION_PATTERN }), Type.Integer({ minimum: 1, maximum: MAX_DURATION_SECONDS })], {
  expected: "a duration: seconds, or a number with s, m, h, d or w (90m, 30d)",
});

/** POST /admin/tokens: a registration token (default) or an API token of another role. */
export const TokenRequest = Type.Object({
  role: Type.Optional(Type.Union(TOKEN_ROLES.map((r) => Type.Literal(r)))),
  /** A label for listings. */
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  /** Registration only: the tags registered devices get. */
  tags: Type.Optional(Tags),
  /** Registration only: the one hardware id that may register. */
  hwid: Type.Optional(HardwareId),
  /** Registration only: how many devices may register with it; default 1. */
  maxUses: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
  /** Registration only: devices choose their own tags (when the token has none) and may change them with x-ats-tags. */
  allowDeviceTags: Type.Optional(Type.Boolean()),
  /** Default 30 days for registration tokens, 365 days for API tokens. */
  expiresIn: Type.Optional(Duration),
});
export type TokenRequest = Static<typeof TokenRequest>;

/** The answer to POST /admin/tokens: the only time the secret is shown. */
export const TokenCreated = Type.Object({ id: Type.String(), role: Type.Union(TOKEN_ROLES.map((r) => Type.Literal(r))), token: Type.String(), expiresAt: Type.String() });
export type TokenCreated = Static<typeof TokenCreated>;

export const RegistrationTokenInfo = Type.Object({
  id: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  tags: Type.Array(Type.String()),
  hwid: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  expiresAt: Type.String(),
  uses: Type.Integer(),
  /** null: no limit (tokens made before limits existed). */
  maxUses: Type.Union([Type.Integer(), Type.Null()]),
  allowDeviceTags: Type.Boolean(),
  revokedAt: Type.Union([Type.String(), Type.Null()]),
  expired: Type.Boolean(),
});
export type RegistrationTokenInfo = Static<typeof RegistrationTokenInfo>;

export const ApiTokenInfo = Type.Object({
  id: Type.String(),
  role: Type.Union([Type.Literal("publish"), Type.Literal("admin"), Type.Literal("viewer")]),
  name: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  expiresAt: Type.String(),
  revokedAt: Type.Union([Type.String(), Type.Null()]),
  expired: Type.Boolean(),
});
export type ApiTokenInfo = Static<typeof ApiTokenInfo>;

/** What a token can still do, in the words `gateway tokens list` and the dashboard's Tokens page both show. */
export type TokenState = "revoked" | "expired" | "used up" | "active";

/**
 * A token's state: a registration token whose every use is spent registers nothing more, as one
 * revoked or expired: "used up", the word registration's refusal uses, never "active".
 *
 * @example
 * ```ts
 * tokenState({ revokedAt: null, expired: false, uses: 3, maxUses: 3 }); // "used up"
 * ```
 */
export function tokenState(t: { revokedAt: string | null; expired: boolean; uses?: number; maxUses?: number | null }): TokenState {
  if (t.revokedAt) return "revoked";
  if (t.expired) return "expired";
  return t.maxUses != null && t.uses !== undefined && t.uses >= t.maxUses ? "used up" : "active";
}

/** GET /admin/tokens: never the secrets. */
export const TokenList = Type.Object({ tokens: Type.Array(RegistrationTokenInfo), apiTokens: Type.Array(ApiTokenInfo) });
export type TokenList = Static<typeof TokenList>;

/** POST /admin/tokens/:id/revoke (either kind). */
export const TokenRevoked = Type.Object({ id: Type.String(), revokedAt: Type.String() });
export type TokenRevoked = Static<typeof TokenRevoked>;

/**
 * GET /admin/whoami: the role of the API token that asks (any API token may ask: a client checks it can do its job before starting it),
 * the gateway's public URL (serve's --public-url: the URL devices use), which publish names the gateway's registry by whatever
 * address it reached the gateway at, and whether the gateway answering can sign targets now (it holds a threshold of the targets
 * keys root trusts; false while they are offline, docs/keys.md "Targets signed offline"), so publish refuses before it builds
 * anything rather than at its last call. Both optional: gateways before them do not say them.
 */
export const WhoAmI = Type.Object({
  role: Type.Union([Type.Literal("publish"), Type.Literal("admin"), Type.Literal("viewer")]),
  publicUrl: Type.Optional(Type.String()),
  canSignTargets: Type.Optional(Type.Boolean()),
});
export type WhoAmI = Static<typeof WhoAmI>;

/**
 * The gateway's public URL a whoami answer says, if it says one that parses. Targets name the
 * gateway's registry by this URL's host, which is not always the address a CI job, an operator or
 * a factory's build host reaches the gateway at (one replica's own, behind a load balancer):
 * publish pins under it, export and preload read what is pinned under it through the address they
 * were given. Undefined for a gateway before whoami carried it (or for no answer).
 *
 * @example
 * ```ts
 * publicUrlOf(await admin.whoami().catch(() => undefined))?.host; // "gw.example:8443", or undefined for an older gateway
 * ```
 */
export function publicUrlOf(who: object | undefined): URL | undefined {
  const said = (who as { publicUrl?: unknown } | undefined)?.publicUrl;
  return typeof said === "string" ? (URL.parse(said) ?? undefined) : undefined;
}

/** GET /admin/targets: the signed targets.json content. */
export const TargetsList = Type.Object({
  targets: Type.Record(Type.String(), TargetEntry),
  version: Type.Integer(),
  /**
   * GET only: target names this gateway's devices report running that targets.json does not hold
   * (published on a gateway since lost: a restore from an older backup). A publish numbers its
   * version above them (publish/targets.ts nextVersion). Absent when there are none, and from
   * gateways before it.
   */
  running: Type.Optional(Type.Array(Type.String())),
});
export type TargetsList = Static<typeof TargetsList>;

/** POST /admin/targets: targets to add or replace in one signed version, all or nothing (answers the new TargetsList). */
export const TargetsBody = Type.Object({
  targets: Type.Record(Type.String({ pattern: TARGET_NAME_PATTERN }), TargetEntry, { minProperties: 1, maxProperties: 1000 }),
  /** The targets.json version these targets were made from; 409 if it is no longer the latest. */
  expectedVersion: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })),
});
export type TargetsBody = Static<typeof TargetsBody>;

/** POST /admin/keys/root answer: the root version now served and the roles re-signed with it. */
export const RootInstalled = Type.Object({ rootVersion: Type.Integer(), refreshed: Type.Array(Type.String()) });
export type RootInstalled = Static<typeof RootInstalled>;

/**
 * A signed root.json: what GET /admin/keys/root answers (the current one) and POST /admin/keys/root
 * installs (one signed offline). Only its outline and sizes are checked here: its whole shape and
 * its signatures are checked by the TUF code (the repository installing it, the caller drafting from it).
 */
export const SignedRoot = Type.Object({
  signatures: Type.Array(Type.Object({ keyid: Type.String({ maxLength: 128 }), sig: Type.String({ maxLength: 1024 }) }), { maxItems: 64 }),
  signed: Type.Object({ _type: Type.Literal("root"), expires: Type.String({ maxLength: 64 }) }, { additionalProperties: true }),
});
export type SignedRoot = Static<typeof SignedRoot>;

/** POST /admin/keys/rotate: the role whose online key is replaced (root answers 403: it changes only by a root signed offline). */
export const RotateRequest = Type.Object({
  role: Type.Union([Type.Literal("root"), Type.Literal("targets"), Type.Literal("snapshot"), Type.Literal("timestamp")]),
});
export type RotateRequest = Static<typeof RotateRequest>;

/** POST /admin/keys/rotate answer. */
export const RotateResult = Type.Object({ role: Type.String(), rootVersion: Type.Union([Type.Integer(), Type.Null()]) });
export type RotateResult = Static<typeof RotateResult>;

/**
 * A device's status on the dashboard: from its latest update event (`registered` before any;
 * `cancelled`: the user cancelled the update on the device, no failure), `offline` when it has
 * not checked in for a while, `never-seen` when it has not checked in for that long since it was
 * registered and never before, `revoked` once revoked.
 */
export const DEVICE_STATUSES = ["registered", "up-to-date", "updating", "failed", "rolled-back", "cancelled", "offline", "never-seen", "revoked"] as const;
export type DeviceStatus = (typeof DEVICE_STATUSES)[number];
const DeviceStatusSchema = Type.Union(DEVICE_STATUSES.map((s) => Type.Literal(s)));

/**
 * The most devices one page holds: of GET /admin/devices and of GET /admin/fleet/devices (whose
 * pages `gateway devices list --limit` reads, each row with its status).
 */
export const DEVICE_PAGE_MAX = 1000;

/** How many digits GET /admin/fleet/devices takes in its `offset`. */
const FLEET_OFFSET_DIGITS = 9;
/** The furthest `offset` GET /admin/fleet/devices takes (999,999,999): the dashboard's last page follows from it. */
export const MAX_FLEET_OFFSET = 10 ** FLEET_OFFSET_DIGITS - 1;

/** GET /admin/fleet/devices query: filters (all optional, combined with AND), sort and a page. */
export const FLEET_SORTS = ["name", "uuid", "lastSeen", "createdAt", "hardwareId", "target", "status"] as const;
export const FleetDeviceQuery = Type.Object({
  /** Part of the name or uuid (case-insensitive). */
  q: Type.Optional(Type.String({ maxLength: 128 })),
  /** Exactly this device. */
  uuid: Type.Optional(Type.String({ maxLength: 128 })),
  /**
   * Devices whose uuid sorts from `uuidFrom` to `uuidTo` (both included, either alone), as
   * GET /admin/devices sorts them: a page of that list is the range from its first uuid to its last.
   * A range, not a list of uuids, so the request line stays short through a proxy (HAProxy's and
   * nginx's request heads hold about 8 KB; 1,000 `uuid=` parameters are 42 KB).
   */
  uuidFrom: Type.Optional(Type.String({ maxLength: 128 })),
  uuidTo: Type.Optional(Type.String({ maxLength: 128 })),
  /**
   * Devices whose uuid sorts after this one (not included): with `sort=uuid`, the page after a page
   * whose last uuid this is, as GET /admin/devices pages by `after`. `gateway devices list` pages
   * this way, so each row and its status come from one read.
   */
  after: Type.Optional(Type.String({ maxLength: 128 })),
  /**
   * A tag among the device's, or among those it reports following (FleetDevice's `reportedTags`):
   * the answer's `reportedOnly` says how many are listed only for the latter.
   */
  tag: Type.Optional(Type.String({ maxLength: 128 })),
  hwid: Type.Optional(Type.String({ maxLength: 128 })),
  target: Type.Optional(Type.String({ maxLength: 256 })),
  /** A label the device has: "key=value". */
  label: Type.Optional(Type.String({ maxLength: 256 })),
  /** Devices of this group (a dynamic group: those its query matches now). */
  group: Type.Optional(Type.String({ maxLength: 128 })),
  status: Type.Optional(DeviceStatusSchema),
  /** Last check-in within this many seconds ("seen"), or not within ("unseen"). */
  seenWithin: Type.Optional(Type.String({ pattern: "^[0-9]{1,9}$", expected: "a whole number of seconds" })),
  unseenFor: Type.Optional(Type.String({ pattern: "^[0-9]{1,9}$", expected: "a whole number of seconds" })),
  sort: Type.Optional(Type.Union(FLEET_SORTS.map((s) => Type.Literal(s)))),
  dir: Type.Optional(Type.Union([Type.Literal("asc"), Type.Literal("desc")])),
  /** At most {@link DEVICE_PAGE_MAX} (a larger one is taken as that); default 50. */
  limit: Type.Optional(Type.String({ pattern: "^[0-9]{1,4}$", expected: "a whole number (at most 4 digits)" })),
  offset: Type.Optional(Type.String({ pattern: `^[0-9]{1,${FLEET_OFFSET_DIGITS}}$`, expected: "a whole number" })),
});
export type FleetDeviceQuery = Static<typeof FleetDeviceQuery>;

export const FleetDevice = Type.Intersect([
  DeviceRow,
  Type.Object({
    status: DeviceStatusSchema,
    /** The details of the failure that set a failed or rolled-back status. */
    statusDetail: Type.Union([Type.String(), Type.Null()]),
    /** When the device took this status (and detail): its update began, it failed; null while "registered". */
    statusAt: Type.Union([Type.String(), Type.Null()]),
    /**
     * The tags the device said it follows at its last check-in (its x-ats-tags), null before it
     * said any. They differ from `tags` where the device follows others: one registered by a fioup
     * before 2026-12-06 with a --tag its token overrode, or an owner's pacman.tags on the device.
     * Optional: a gateway before 2026-12-07 does not send it.
     */
    reportedTags: Type.Optional(Type.Union([Type.Array(Type.String()), Type.Null()])),
  }),
]);
export type FleetDevice = Static<typeof FleetDevice>;

/**
 * GET /admin/fleet/devices: one page, how many devices match in all, and, for a group's or a
 * tag's list without a status filter, how many of those are revoked (in no group and no rollout;
 * optional: a gateway before 2026-12-07 does not say, nor one asked for another list).
 */
export const FleetDeviceList = Type.Object({
  devices: Type.Array(FleetDevice),
  /** How many devices match; absent for a page asked with `after` (counting the rest of the fleet at every page would cost as much as the listing). */
  total: Type.Optional(Type.Integer()),
  revoked: Type.Optional(Type.Integer()),
  /**
   * Asked with `tag`: how many of the devices not revoked are listed only because they report
   * following it, while their tags, which a group or a rollout by the tag reads, lack it. Absent
   * from other lists, a page asked with `after`, and a gateway's answer before 2026-12-07.
   */
  reportedOnly: Type.Optional(Type.Integer()),
  offset: Type.Integer(),
  limit: Type.Integer(),
});
export type FleetDeviceList = Static<typeof FleetDeviceList>;

/** GET /admin/fleet/summary: the dashboard's overview. */
export const FleetSummary = Type.Object({
  total: Type.Integer(),
  byStatus: Type.Record(Type.String(), Type.Integer()),
  /** Devices per current target (null: not reported yet), most first: every target a device runs. */
  versions: Type.Array(Type.Object({ target: Type.Union([Type.String(), Type.Null()]), devices: Type.Integer() })),
  recentFailures: Type.Array(FleetDevice),
  /** Device check-ins this gateway served per minute, oldest first; the last entry is the current minute. */
  checkinsPerMinute: Type.Array(Type.Integer()),
  /** A device is offline (never-seen, if it never checked in) after this many seconds without a check-in. */
  offlineAfterSeconds: Type.Integer(),
});
export type FleetSummary = Static<typeof FleetSummary>;

/** A device label key: lower case, digits and `._/-`, starting with a letter or digit. */
export const LABEL_KEY_PATTERN = "^[a-z0-9][a-z0-9._/-]{0,62}$";
const LabelKey = Type.String({ pattern: LABEL_KEY_PATTERN, expected: "a label key (lower-case letters, digits, . _ / -; at most 63, starting with a letter or digit)" });
const LabelValue = Type.String({ maxLength: 128 });
/** A device's labels (key=value), set by the admin only. */
export const Labels = Type.Record(LabelKey, LabelValue);

/**
 * The most labels a device has, and so the most one request sets or removes: the dashboard's
 * labels form sends all of a device's labels in one request (`gateway devices label` checks it too).
 */
export const MAX_DEVICE_LABELS = 64;

/**
 * How a change to a device's labels (`set`, then `remove`) breaks the limit of `max` a device
 * ({@link MAX_DEVICE_LABELS}), or undefined when it keeps it: the device may end with more than
 * `max` only if it had at least as many, so one labelled past the limit (by an older gateway) can
 * still lose labels. The one rule: the store applies it in the write's transaction, the dashboard's
 * labels form before its request; `TooManyLabelsError` (gateway/store/types.ts) says it.
 *
 * @example
 * ```ts
 * labelCountProblem({ a: "1" }, { b: "2", c: "3" }, [], 2); // { would: 3, had: 1 }
 * labelCountProblem({ a: "1", b: "2", c: "3" }, { d: "4" }, ["a", "b"], 1); // undefined: 2, fewer than 3
 * ```
 */
export function labelCountProblem(current: Record<string, string>, set: Record<string, string>, remove: string[], max: number): { would: number; had: number } | undefined {
  const keys = new Set([...Object.keys(current), ...Object.keys(set)]);
  for (const k of remove) keys.delete(k);
  const would = keys.size;
  const had = Object.keys(current).length;
  return would > max && would > had ? { would, had } : undefined;
}

/** PUT /admin/devices/:uuid/labels: labels to set (or replace) and keys to remove (answers the device row). */
export const DeviceLabelsRequest = Type.Object({
  set: Type.Optional(Type.Record(LabelKey, LabelValue, { maxProperties: MAX_DEVICE_LABELS })),
  remove: Type.Optional(Type.Array(LabelKey, { maxItems: MAX_DEVICE_LABELS })),
});
export type DeviceLabelsRequest = Static<typeof DeviceLabelsRequest>;

/** A group name: like a label key, so it reads well in a command line. */
const GROUP_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$";
export const GroupName = Type.String({ pattern: GROUP_NAME_PATTERN, expected: "a group name (letters, digits, . _ -; at most 63, starting with a letter or digit)" });

/** A device group: static (a list of devices) or dynamic (a query evaluated when used, gateway/fleet/query.ts). */
export const GroupRow = Type.Object({
  name: Type.String(),
  kind: Type.Union([Type.Literal("static"), Type.Literal("dynamic")]),
  /** Dynamic groups only: e.g. `region=eu tag=prod hwid=rpi4 name~kiosk`. */
  query: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
});
export type GroupRow = Static<typeof GroupRow>;

/** POST /admin/groups: without `query` a static group. */
export const GroupRequest = Type.Object({
  name: GroupName,
  query: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  /** Static groups: the first members. */
  devices: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 10_000 })),
});
export type GroupRequest = Static<typeof GroupRequest>;

/** GET /admin/groups */
export const GroupList = Type.Object({ groups: Type.Array(Type.Intersect([GroupRow, Type.Object({ devices: Type.Integer() })])) });
export type GroupList = Static<typeof GroupList>;

/**
 * GET /admin/devices/:uuid/groups: every group, and whether the device is in it now (a dynamic
 * group's query matches it; a revoked device is in none), by name: what its page shows.
 */
export const DeviceGroupList = Type.Object({ groups: Type.Array(Type.Intersect([GroupRow, Type.Object({ member: Type.Boolean() })])) });
export type DeviceGroupList = Static<typeof DeviceGroupList>;

/** GET /admin/groups/:name?limit&after: the group and one page of its members (static) or of its current evaluation (dynamic). */
export const GroupDetail = Type.Intersect([
  GroupRow,
  Type.Object({ devices: Type.Integer(), members: Type.Array(Type.String()), next: Type.Optional(Type.String()) }),
]);
export type GroupDetail = Static<typeof GroupDetail>;

/** POST /admin/groups/:name/members: static groups only. */
export const GroupMembersRequest = Type.Object({
  add: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 10_000 })),
  remove: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 10_000 })),
});
export type GroupMembersRequest = Static<typeof GroupMembersRequest>;

/** The answer to POST /admin/groups/:name/members. */
export const GroupMembersChanged = Type.Object({ name: Type.String(), added: Type.Integer(), removed: Type.Integer(), devices: Type.Integer() });
export type GroupMembersChanged = Static<typeof GroupMembersChanged>;

/** DELETE /admin/groups/:name */
export const GroupDeleted = Type.Object({ name: Type.String() });

/** A rollout's life: active (running, paused, halted: it still decides who sees its target) until completed or cancelled. */
export const ROLLOUT_STATES = ["running", "paused", "halted", "completed", "cancelled"] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];
export const ACTIVE_ROLLOUT_STATES: readonly RolloutState[] = ["running", "paused", "halted"];

export const ROLLOUT_EVENT_KINDS = [
  "created", "wave-started", "wave-advanced", "halted", "paused", "resumed", "cancelled", "completed",
  "device-succeeded", "device-failed", "device-deferred", "rolled-back",
] as const;
export type RolloutEventKind = (typeof ROLLOUT_EVENT_KINDS)[number];

export const ROLLOUT_DEVICE_STATUSES = ["pending", "succeeded", "failed"] as const;
export type RolloutDeviceStatus = (typeof ROLLOUT_DEVICE_STATUSES)[number];

/** A staged release of one target version to a group or a tag, wave by wave. */
export const RolloutRow = Type.Object({
  id: Type.String(),
  /** custom.version of the targets it releases. */
  targetVersion: Type.String(),
  groupName: Type.Union([Type.String(), Type.Null()]),
  tag: Type.Union([Type.String(), Type.Null()]),
  /** Cumulative percents of the audience, increasing, the last 100: [1, 10, 100]. */
  waves: Type.Array(Type.Number()),
  soakS: Type.Integer(),
  maxFailuresPct: Type.Number(),
  healthWindowS: Type.Integer(),
  pendingTimeoutS: Type.Integer(),
  /** e.g. "Sat 02:00-04:00 Europe/Berlin": devices install only inside it. */
  installWindow: Type.Union([Type.String(), Type.Null()]),
  maxHoldS: Type.Union([Type.Integer(), Type.Null()]),
  rollbackOnHalt: Type.Boolean(),
  state: Type.Union(ROLLOUT_STATES.map((s) => Type.Literal(s))),
  /** 0-based index of the newest released wave. */
  wave: Type.Integer(),
  waveStartedAt: Type.String(),
  /**
   * When each released wave started (0..wave), for its devices' pending timeout; absent on a
   * rollout from before they were kept (waveStartedAt then stands for every wave).
   */
  waveStarts: Type.Optional(Type.Array(Type.String())),
  reason: Type.Union([Type.String(), Type.Null()]),
  /** Bumped by every change (optimistic concurrency between replicas). */
  revision: Type.Integer(),
  /** Failures already counted when a halted rollout was resumed: the halt rule counts only newer ones. */
  acknowledgedFailures: Type.Integer(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export type RolloutRow = Static<typeof RolloutRow>;

/**
 * A device's last reported deferral: an update lock, the maintenance window, or a window the
 * device cannot judge until its clock is set ("clock": it reads before the release was made),
 * until when (null: unknown).
 */
export const RolloutHold = Type.Object({
  kind: Type.Union(HOLD_KINDS.map((k) => Type.Literal(k))),
  until: Type.Union([Type.String(), Type.Null()]),
  /** The first deferral of this kind in the hold. */
  at: Type.String(),
  /** When the hold began, if before `at` (it changed kind since: a window, then a lock): the gateway's longest hold counts from it. */
  since: Type.Optional(Type.String()),
});
export type RolloutHold = Static<typeof RolloutHold>;

/** What holds a device's install, by the kind of its hold, in a few words (the dashboard, `rollouts show`). */
export const HOLD_KIND_NAMES: Record<RolloutHold["kind"], string> = {
  lock: "update lock",
  window: "maintenance window",
  clock: "clock not set yet",
};

/** One member of a rollout. */
export const RolloutDeviceRow = Type.Object({
  rolloutId: Type.String(),
  uuid: Type.String(),
  wave: Type.Integer(),
  status: Type.Union(ROLLOUT_DEVICE_STATUSES.map((s) => Type.Literal(s))),
  reason: Type.Union([Type.String(), Type.Null()]),
  healthySince: Type.Union([Type.String(), Type.Null()]),
  hold: Type.Union([RolloutHold, Type.Null()]),
  updatedAt: Type.String(),
});
export type RolloutDeviceRow = Static<typeof RolloutDeviceRow>;

/** One transition of a rollout or of one of its devices, with its reason. */
export const RolloutEventRow = Type.Object({
  id: Type.Integer(),
  rolloutId: Type.String(),
  at: Type.String(),
  kind: Type.Union(ROLLOUT_EVENT_KINDS.map((k) => Type.Literal(k))),
  wave: Type.Union([Type.Integer(), Type.Null()]),
  deviceUuid: Type.Union([Type.String(), Type.Null()]),
  reason: Type.String(),
});
export type RolloutEventRow = Static<typeof RolloutEventRow>;

/** Members per wave and status. */
export const RolloutCount = Type.Object({ wave: Type.Integer(), status: Type.Union(ROLLOUT_DEVICE_STATUSES.map((s) => Type.Literal(s))), devices: Type.Integer() });
export type RolloutCount = Static<typeof RolloutCount>;

/** The most devices a rollout's detail lists as held, failed or waiting (each list). */
export const ROLLOUT_LIST_MAX = 100;

/** GET /admin/rollouts/:id (and the answer of every rollout action). */
export const RolloutDetail = Type.Intersect([
  RolloutRow,
  Type.Object({
    counts: Type.Array(RolloutCount),
    /** Devices deferring the install (lock or window), at most ROLLOUT_LIST_MAX. */
    holds: Type.Array(RolloutDeviceRow),
    /** True when more devices defer the install than `holds` lists. */
    moreHolds: Type.Boolean(),
    /** How many devices defer the install in all (optional: a gateway before 2026-12-07 says only `moreHolds`). */
    heldDevices: Type.Optional(Type.Integer()),
    /** Failed devices with their reasons, at most ROLLOUT_LIST_MAX (`counts` says how many failed). */
    failures: Type.Array(RolloutDeviceRow),
    /** Pending devices whose clock has not started, with what they wait for ("no target of version 8 for arm64-linux yet"), at most ROLLOUT_LIST_MAX. */
    waiting: Type.Array(RolloutDeviceRow),
    /** True when more devices wait than `waiting` lists. */
    moreWaiting: Type.Boolean(),
    /** How many devices wait in all (optional, as `heldDevices`). */
    waitingDevices: Type.Optional(Type.Integer()),
    /** The latest events, newest first. */
    events: Type.Array(RolloutEventRow),
  }),
]);
export type RolloutDetail = Static<typeof RolloutDetail>;

/** GET /admin/rollouts?active=1 */
export const RolloutList = Type.Object({ rollouts: Type.Array(RolloutRow) });
export type RolloutList = Static<typeof RolloutList>;

/** The most waves a rollout may have. */
export const MAX_WAVES = 20;

/** POST /admin/rollouts: release `target` (a custom.version) to a group or a tag in waves. */
export const RolloutRequest = Type.Object({
  /** The custom.version to release, written without leading zeros, as published ("10", not "0010"). */
  target: Type.String({ minLength: 1, maxLength: 256 }),
  group: Type.Optional(GroupName),
  tag: Type.Optional(Tag),
  /** Cumulative percents, increasing, ending in 100: [1, 10, 100]. */
  waves: Type.Array(Type.Number({ exclusiveMinimum: 0, maximum: 100 }), { minItems: 1, maxItems: MAX_WAVES }),
  /** Time a wave runs before the next starts; default 30m. */
  soak: Type.Optional(Duration),
  /** Halt when more than this percent of the released devices failed; default 5. */
  maxFailures: Type.Optional(Type.Number({ minimum: 0, maximum: 100 })),
  /** How long every app must stay healthy after the update; default 10m. */
  healthWindow: Type.Optional(Duration),
  /**
   * A device still pending this long after its wave started (or after the version was published,
   * if later) counts as failed; longer than healthWindow; default 1h.
   */
  pendingTimeout: Type.Optional(Duration),
  /** Maintenance window in the device's time zone, e.g. "Sat 02:00-04:00 Europe/Berlin". */
  window: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  /** Longest an update lock may defer the install. */
  maxHold: Type.Optional(Duration),
  rollbackOnHalt: Type.Optional(Type.Boolean()),
  /** Devices that go first (wave 1), in this order. */
  first: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 1000 })),
});
export type RolloutRequest = Static<typeof RolloutRequest>;
