/**
 * Bodies of the gateway's admin API (`/admin/...`), shared by the routes
 * (which validate requests with them) and by the one admin client,
 * `lib/api/admin-client.ts` (which checks every answer with them). A field
 * changes here, once, for both sides.
 *
 * @module
 */
import { Type, type Static } from "@sinclair/typebox";
import { AppsStates, DeviceEvent } from "./device.ts";
import { TargetEntry } from "./target.ts";

/** A tag as devices and targets carry it. */
const Tag = Type.String({ minLength: 1, maxLength: 128, pattern: "^[^,\\s]+$" });
export const Tags = Type.Array(Tag, { maxItems: 32 });

/** A registered device as the gateway keeps it (the store's row and the admin API's answer). */
export const DeviceRow = Type.Object({
  uuid: Type.String(),
  name: Type.String(),
  hardwareId: Type.String(),
  factory: Type.String(),
  tags: Type.Array(Type.String()),
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

/** A lifetime: "30d", "12h", "90m", "3600s", "2w" or seconds (at most 100 years). */
const Duration = Type.Union([Type.String({ pattern: "^[0-9]{1,9}[smhdw]?$" }), Type.Integer({ minimum: 1, maximum: 3_153_600_000 })]);

/** POST /admin/tokens: a registration token (default) or an API token of another role. */
export const TokenRequest = Type.Object({
  role: Type.Optional(Type.Union(TOKEN_ROLES.map((r) => Type.Literal(r)))),
  /** A label for listings. */
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  /** Registration only: the tags registered devices get. */
  tags: Type.Optional(Tags),
  /** Registration only: the one hardware id that may register. */
  hwid: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
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

/** GET /admin/tokens: never the secrets. */
export const TokenList = Type.Object({ tokens: Type.Array(RegistrationTokenInfo), apiTokens: Type.Array(ApiTokenInfo) });
export type TokenList = Static<typeof TokenList>;

/** POST /admin/tokens/:id/revoke (either kind). */
export const TokenRevoked = Type.Object({ id: Type.String(), revokedAt: Type.String() });
export type TokenRevoked = Static<typeof TokenRevoked>;

/** GET /admin/targets: the signed targets.json content. */
export const TargetsList = Type.Object({ targets: Type.Record(Type.String(), TargetEntry), version: Type.Integer() });
export type TargetsList = Static<typeof TargetsList>;

/** POST /admin/keys/root answer: the root version now served and the roles re-signed with it. */
export const RootInstalled = Type.Object({ rootVersion: Type.Integer(), refreshed: Type.Array(Type.String()) });
export type RootInstalled = Static<typeof RootInstalled>;

/** GET /admin/keys/root: the current signed root.json (checked by the caller's TUF code, not here). */
export const SignedRootDocument = Type.Object({ signed: Type.Object({ _type: Type.Literal("root") }, { additionalProperties: true }), signatures: Type.Array(Type.Unknown()) });

/** POST /admin/keys/rotate answer. */
export const RotateResult = Type.Object({ role: Type.String(), rootVersion: Type.Union([Type.Integer(), Type.Null()]) });
export type RotateResult = Static<typeof RotateResult>;

/**
 * A device's status on the dashboard: from its latest update event (`registered` before any),
 * `offline` when it has not checked in for a while, `revoked` once revoked.
 */
export const DEVICE_STATUSES = ["registered", "up-to-date", "updating", "failed", "rolled-back", "offline", "revoked"] as const;
export type DeviceStatus = (typeof DEVICE_STATUSES)[number];
const DeviceStatusSchema = Type.Union(DEVICE_STATUSES.map((s) => Type.Literal(s)));

/** GET /admin/fleet/devices query: filters (all optional, combined with AND), sort and a page. */
export const FLEET_SORTS = ["name", "uuid", "lastSeen", "createdAt", "hardwareId", "target", "status"] as const;
export const FleetDeviceQuery = Type.Object({
  /** Part of the name or uuid (case-insensitive). */
  q: Type.Optional(Type.String({ maxLength: 128 })),
  /** Exactly this device. */
  uuid: Type.Optional(Type.String({ maxLength: 128 })),
  tag: Type.Optional(Type.String({ maxLength: 128 })),
  hwid: Type.Optional(Type.String({ maxLength: 128 })),
  target: Type.Optional(Type.String({ maxLength: 256 })),
  status: Type.Optional(DeviceStatusSchema),
  /** Last check-in within this many seconds ("seen"), or not within ("unseen"). */
  seenWithin: Type.Optional(Type.String({ pattern: "^[0-9]{1,9}$" })),
  unseenFor: Type.Optional(Type.String({ pattern: "^[0-9]{1,9}$" })),
  sort: Type.Optional(Type.Union(FLEET_SORTS.map((s) => Type.Literal(s)))),
  dir: Type.Optional(Type.Union([Type.Literal("asc"), Type.Literal("desc")])),
  limit: Type.Optional(Type.String({ pattern: "^[0-9]{1,4}$" })),
  offset: Type.Optional(Type.String({ pattern: "^[0-9]{1,9}$" })),
});
export type FleetDeviceQuery = Static<typeof FleetDeviceQuery>;

export const FleetDevice = Type.Intersect([
  DeviceRow,
  Type.Object({
    status: DeviceStatusSchema,
    /** The details of the failure that set a failed or rolled-back status. */
    statusDetail: Type.Union([Type.String(), Type.Null()]),
    statusAt: Type.Union([Type.String(), Type.Null()]),
  }),
]);
export type FleetDevice = Static<typeof FleetDevice>;

/** GET /admin/fleet/devices: one page and how many devices match in all. */
export const FleetDeviceList = Type.Object({ devices: Type.Array(FleetDevice), total: Type.Integer(), offset: Type.Integer(), limit: Type.Integer() });
export type FleetDeviceList = Static<typeof FleetDeviceList>;

/** GET /admin/fleet/summary: the dashboard's overview. */
export const FleetSummary = Type.Object({
  total: Type.Integer(),
  byStatus: Type.Record(Type.String(), Type.Integer()),
  /** Devices per current target (null: not reported yet), most first. */
  versions: Type.Array(Type.Object({ target: Type.Union([Type.String(), Type.Null()]), devices: Type.Integer() })),
  recentFailures: Type.Array(FleetDevice),
  /** Device check-ins this gateway served per minute, oldest first; the last entry is the current minute. */
  checkinsPerMinute: Type.Array(Type.Integer()),
  /** A device is offline after this many seconds without a check-in. */
  offlineAfterSeconds: Type.Integer(),
});
export type FleetSummary = Static<typeof FleetSummary>;
