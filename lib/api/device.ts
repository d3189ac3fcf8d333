/**
 * Bodies of the device-facing API (docs/formats.md), shared by the gateway (which
 * validates them) and fioup (which builds them).
 *
 * @module
 */
import { Type, type Static } from "@sinclair/typebox";
import { HardwareId } from "./target.ts";

export const MAX_DEVICE_BODY = 256 * 1024;

export const EVENT_TYPES = [
  "MetadataUpdateCompleted",
  "UpdateInitStarted",
  "UpdateInitCompleted",
  "EcuDownloadStarted",
  "EcuDownloadCompleted",
  "EcuInstallationStarted",
  "EcuInstallationApplied",
  "EcuInstallationCompleted",
  /** Install deferred by a maintenance window, update locks or a clock not set yet; details: {reason: window|lock|clock, until, heldSince, ...} (docs/formats.md). */
  "UpdateDeferred",
  /** A deferred install goes ahead; details: {heldSince, releasedBy: window|lock|clock|max-hold|force}. */
  "UpdateHoldReleased",
  /** Queued events the device dropped to bound its queue (fioup/db.ts), under a correlation id of its own; details: {dropped, from, to, why}. */
  "EventsDropped",
] as const;
export type EventTypeId = (typeof EVENT_TYPES)[number];

/**
 * What holds a device's install, as UpdateDeferred's details.reason says it: the one list fioup
 * reports from (fioup/update/hold-policy.ts: a reason outside it does not compile) and the
 * gateway's rollouts read (RolloutHold; the word maps keyed by it need a line for a new kind).
 */
export const HOLD_KINDS = ["lock", "window", "clock"] as const;
export type HoldKind = (typeof HOLD_KINDS)[number];

export const DeviceEvent = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64 }),
  deviceTime: Type.String({ maxLength: 64 }),
  eventType: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }), version: Type.Integer() }),
  event: Type.Object(
    {
      correlationId: Type.String({ minLength: 1, maxLength: 128 }),
      success: Type.Optional(Type.Boolean()),
      targetName: Type.Optional(Type.String({ maxLength: 256 })),
      version: Type.Optional(Type.String({ maxLength: 32 })),
      details: Type.Optional(Type.String({ maxLength: 16384 })),
    },
    { additionalProperties: true },
  ),
});
export type DeviceEvent = Static<typeof DeviceEvent>;

/** What an EventsDropped note says: how many events, the device times of the oldest and newest of them, and why. */
export interface DroppedEvents {
  dropped: number;
  from: string;
  to: string;
  why?: string;
}

/** An EventsDropped note's details, or undefined for any other event (or details that are not such a note). */
export function readDroppedEvents(e: DeviceEvent): DroppedEvents | undefined {
  if (e.eventType.id !== "EventsDropped" || !e.event.details) return undefined;
  try {
    const d = JSON.parse(e.event.details) as Partial<DroppedEvents>;
    if (typeof d.dropped !== "number" || typeof d.from !== "string" || typeof d.to !== "string") return undefined;
    return { dropped: d.dropped, from: d.from, to: d.to, ...(typeof d.why === "string" ? { why: d.why } : {}) };
  } catch {
    return undefined;
  }
}

export const EventBatch = Type.Array(DeviceEvent, { maxItems: 500 });

export const ServiceState = Type.Object({
  name: Type.String({ maxLength: 256 }),
  hash: Type.Optional(Type.String({ maxLength: 256 })),
  state: Type.String({ maxLength: 64 }),
  status: Type.Optional(Type.String({ maxLength: 256 })),
  health: Type.Optional(Type.String({ maxLength: 64 })),
  image: Type.Optional(Type.String({ maxLength: 1024 })),
});
export type ServiceState = Static<typeof ServiceState>;

export const AppState = Type.Object({
  uri: Type.String({ maxLength: 1024 }),
  state: Type.Union([Type.Literal("healthy"), Type.Literal("unhealthy")]),
  services: Type.Array(ServiceState, { maxItems: 256 }),
});
export type AppState = Static<typeof AppState>;

export const AppsStates = Type.Object({
  deviceTime: Type.String({ maxLength: 64 }),
  apps: Type.Record(Type.String({ maxLength: 128 }), AppState, { maxProperties: 256 }),
});
export type AppsStates = Static<typeof AppsStates>;

/**
 * A device-supplied inventory value: any JSON, but bounded: strings up to 4 KiB, arrays up to 256
 * items, objects up to 256 keys of up to 128 characters. (The JSON reader bounds the nesting depth.)
 */
export const InventoryValue = Type.Recursive(
  (Self) =>
    Type.Union([
      Type.String({ maxLength: 4096 }),
      Type.Number(),
      Type.Boolean(),
      Type.Null(),
      Type.Array(Self, { maxItems: 256 }),
      Type.Record(Type.String({ maxLength: 128 }), Self, { maxProperties: 256 }),
    ]),
  { $id: "InventoryValue" },
);

/** PUT /system_info: hardware inventory (fioup sends flat facts; lshw-style trees fit too). */
export const SystemInfo = Type.Record(Type.String({ maxLength: 128 }), InventoryValue, { maxProperties: 256 });

export const NetworkInfo = Type.Object({
  hostname: Type.String({ maxLength: 255 }),
  mac: Type.String({ maxLength: 64 }),
  local_ipv4: Type.String({ maxLength: 64 }),
});
export type NetworkInfo = Static<typeof NetworkInfo>;

/** PUT /system_info/config: the device's merged config, as TOML text or a JSON object. */
export const SystemConfig = Type.Union([Type.String({ maxLength: 65536 }), Type.Record(Type.String({ maxLength: 128 }), InventoryValue, { maxProperties: 256 })]);

/** GET /device */
export const DeviceInfo = Type.Object({
  uuid: Type.String(),
  name: Type.String(),
  tag: Type.String(),
  tags: Type.Array(Type.String()),
  hardwareId: Type.String(),
  created_at: Type.String(),
  last_seen: Type.Union([Type.String(), Type.Null()]),
  currentTarget: Type.Union([Type.String(), Type.Null()]),
  apps: Type.Union([Type.Array(Type.String()), Type.Null()]),
  /** The labels the admin set (fioup reads `timezone` for a maintenance window that names no zone). */
  labels: Type.Optional(Type.Record(Type.String(), Type.String())),
});
export type DeviceInfo = Static<typeof DeviceInfo>;

/**
 * The lists a device reports in its check-in headers (`x-ats-tags`, `x-ats-dockerapps`): comma-
 * separated items, each 1-128 characters with no whitespace, comma or control character (nothing
 * an operator's terminal would act on). The gateway keeps the first CHECKIN_LIST_MAX_ITEMS valid
 * items; the device sends at most those, and at most CHECKIN_LIST_MAX_BYTES per header, so a
 * check-in's head stays well inside what a proxy takes (the shipped HAProxy plain-hop config takes
 * about 7 KB of head: deploy/haproxy/gateway-plain.cfg). A device with more apps than fit reports
 * the first ones; its update is not affected (only what the gateway shows of it).
 */
export const CHECKIN_LIST_MAX_ITEMS = 32;
export const CHECKIN_LIST_MAX_BYTES = 2048;
// eslint-disable-next-line no-control-regex
const CHECKIN_ITEM = /^[^\s,\u0000-\u001f\u007f-\u009f]{1,128}$/;

/**
 * A check-in header's list as the gateway reads it: the valid items, trimmed, each once (where
 * first given), the first CHECKIN_LIST_MAX_ITEMS; `keep` narrows what is valid (x-ats-tags: only
 * tags, isTag), before the cut.
 */
export function readCheckinList(value: string, keep?: (item: string) => boolean): string[] {
  const items = value
    .split(",")
    .map((t) => t.trim())
    .filter((t) => CHECKIN_ITEM.test(t) && (!keep || keep(t)));
  return [...new Set(items)].slice(0, CHECKIN_LIST_MAX_ITEMS);
}

/** A check-in header's value for `items`: what the gateway would keep of them, cut at CHECKIN_LIST_MAX_BYTES. */
export function checkinList(items: readonly string[]): string {
  let value = "";
  for (const item of readCheckinList(items.join(","))) {
    const next = value ? `${value},${item}` : item;
    if (Buffer.byteLength(next) > CHECKIN_LIST_MAX_BYTES) break;
    value = next;
  }
  return value;
}

/**
 * The response header with which the gateway tells a device the tags it decided for it: on
 * `GET /repo/timestamp.json`, the start of every check, for a device whose tags are the gateway's
 * (its registration token did not let it choose; set by the token, the admin registering it, or
 * `gateway devices tag`) and not empty. The device follows them: they decide which targets it can
 * select, and the rollouts that name a tag count it by them. Comma-separated, read with
 * {@link readCheckinList}. Absent: the device keeps the tags of its own config.
 */
export const DEVICE_TAGS_HEADER = "x-device-tags";

/**
 * A device uuid as the gateway accepts it: canonical lower-case RFC 4122 text
 * (version 1 to 8, variant 10xx). One spelling per device, so an upper-case
 * or undashed look-alike of a registered uuid is refused, not a second device.
 */
export const DEVICE_UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$";
/** {@link DEVICE_UUID_PATTERN} as a schema: what a registration names, and what the admin commands check a uuid argument against. */
export const DeviceUuid = Type.String({ pattern: DEVICE_UUID_PATTERN, expected: "a lower-case RFC 4122 uuid (8-4-4-4-12 hex digits with dashes)" });

/**
 * POST /devices with `Authorization: Bearer <registration token>`: a new device
 * without a client certificate, or a registered one re-registering its `uuid`
 * over mTLS with its current certificate (gateway/routes/register.ts; 409 when the
 * uuid is not the request's to take). The CSR's CN must equal `uuid`.
 */
export const RegistrationRequest = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 128 }),
  uuid: DeviceUuid,
  csr: Type.String({ minLength: 64, maxLength: 16384 }),
  "hardware-id": HardwareId,
  // Held to the Tag rule where they are used (gateway/routes/register.ts): a token with tags of its
  // own, or one that lets no device choose, ignores them, and refusing them there would refuse a
  // device for what does not count.
  tags: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 32 })),
  apps: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 256 })),
});
export type RegistrationRequest = Static<typeof RegistrationRequest>;

export const RegistrationResponse = Type.Object({
  /** PEM client certificate, CN = uuid, OU = factory. */
  certificate: Type.String(),
  /** PEM of the CA that signed the gateway's TLS certificate and device certificates. */
  ca: Type.String(),
  /** The current root.json, as served at /repo/N.root.json (the device's trust anchor). */
  root: Type.Unknown(),
  /** sota.toml text for the device (server URL, paths, tags, hwid, shortlist). */
  config: Type.String(),
  /**
   * True when the device chooses its own tags (its token was made with --allow-device-tags): its
   * x-ats-tags header sets them on the gateway. False: the tags in `config` are the gateway's, and
   * the device follows them (DEVICE_TAGS_HEADER). Absent from gateways before 2026-12-06.
   */
  tagsFromDevice: Type.Optional(Type.Boolean()),
});
export type RegistrationResponse = Static<typeof RegistrationResponse>;

/**
 * The CN of a certificate subject as node:crypto's X509Certificate gives it (`CN=...` lines): a
 * device certificate's is the device uuid (the gateway issues `CN=<uuid>, OU=<factory>`).
 */
export const subjectCn = (subject: string): string | undefined => /(?:^|\n)CN=([^\n]+)/.exec(subject)?.[1];
