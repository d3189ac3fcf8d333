/**
 * What every gateway request can see: the transport's facts in
 * Hono `Bindings` (the verified peer certificate, the remote address), the
 * gateway's long-lived services and the authenticated device in `Variables`.
 * Tests call `app.request(path, init, { peer })` to be a device without TLS.
 *
 * @module
 */
import type { ApiRole, RolloutDetail, RolloutRequest } from "../lib/api/admin.ts";
import type { TargetEntry } from "../lib/api/index.ts";
import type { ApiTokenCache } from "./admin/api-tokens.ts";
import type { DeviceCache } from "./devices/cache.ts";
import type { DiskFull } from "./disk-full.ts";
import type { Sightings } from "./devices/sightings.ts";
import type { Metrics } from "./metrics.ts";
import type { View, ViewLookup } from "./ota/views.ts";
import type { TufSigning } from "./ota/repo.ts";
import type { RefreshFailure } from "./ota/refresh-timer.ts";
import type { RoleName } from "../lib/tuf/metadata.ts";
import type { CertificateAuthority } from "./pki/ca.ts";
import type { DeviceRow, RegistrationTokenRow, Store } from "./store/types.ts";

/** A client certificate whose chain the transport verified against the device CA. */
export interface PeerIdentity {
  /** Subject CN: the device uuid. */
  cn: string;
  /** Normalised serial (see `normalizeSerial`). */
  serial: string;
}

export interface Bindings {
  peer?: PeerIdentity;
  remoteAddr?: string;
  /** The client's connection, from the gateway's transport: a handler holding a request without a body (GET /repo/wait) learns when the client leaves. */
  connection?: ClientConnection;
}

/** What a handler may see of its client's connection. */
export interface ClientConnection {
  readonly closed: boolean;
  /** Called once if the connection closes before the answer is out; only for requests without a body (the transport uses it for uploads). */
  onClose: (() => void) | undefined;
  /** Asks to hold this request open for long (a long poll); false: the transport keeps its remaining connections for other requests, answer now. */
  hold(): boolean;
}

/** The TUF repository as the routes need it (implemented over gateway/ota's TufRepo). */
export interface TufService {
  /**
   * Bytes of a metadata file as served under /repo/ ("timestamp.json", "3.root.json", "root.json"...);
   * with `view`, the requesting device's signed view of it (gateway/ota/views.ts). Without a
   * promise when they are at hand (a check-in's poll); an error is thrown or rejects the promise.
   */
  metadata(fileName: string, view?: ViewLookup): Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /** New targets, snapshot and timestamp versions, same content: devices whose view changed see it (gateway/ota/repo.ts). */
  bumpViews(): Promise<{ version: number }>;
  /** The signed targets.json content. */
  targets(): Promise<{ targets: Record<string, TargetEntry>; version: number }>;
  addTargets(targets: Record<string, TargetEntry>, opts?: { expectedVersion?: number }): Promise<unknown>;
  removeTargets(names: string[]): Promise<unknown>;
  rotate(role: "root" | "targets" | "snapshot" | "timestamp"): Promise<{ rootVersion: number }>;
  /** The latest root.json bytes. */
  trustedRoot(): Promise<Uint8Array>;
  /** Installs a root.json signed offline (gateway/ota/repo.ts). */
  updateRoot(bytes: string): Promise<{ version: number; refreshed: string[] }>;
  /** Whether the gateway holds the keys to sign `role`, and how long before its expiry it re-signs it then (gateway/ota/repo.ts). */
  signing(role: RoleName): Promise<TufSigning>;
}

/**
 * Staged rollouts as the admin routes need them (gateway/admin/rollouts.ts; implemented by
 * gateway/rollouts/service.ts). Each action answers the rollout as `GET /admin/rollouts/:id` shows it.
 */
export interface RolloutService {
  create(req: RolloutRequest): Promise<RolloutDetail>;
  /** undefined: no rollout with this id. */
  show(id: string): Promise<RolloutDetail | undefined>;
  pause(id: string): Promise<RolloutDetail>;
  resume(id: string): Promise<RolloutDetail>;
  /** `fromWave`: the wave (1-based) the operator saw running; refused if the rollout is at another by now (a double submit). */
  advance(id: string, fromWave?: number): Promise<RolloutDetail>;
  cancel(id: string): Promise<RolloutDetail>;
  /** The signed view a device is served (gateway/ota/views.ts), from the in-memory rollout cache. */
  view(deviceUuid: string): View;
  /** Reloads that cache if a rollout changed; called once per new timestamp version, before views sign it. */
  refreshViews(): Promise<void>;
}

/** Long-lived services shared by all requests. */
export interface Gateway {
  store: Store;
  factory: string;
  ca: CertificateAuthority;
  adminToken: string;
  /** https://host:port as devices reach it. */
  publicUrl: string;
  tuf: TufService;
  devices: DeviceCache;
  /** Publish and admin tokens (gateway/admin/api-tokens.ts). */
  apiTokens: ApiTokenCache;
  sightings: Sightings;
  metrics: Metrics;
  /** Writes refused for want of disk space, said once per spell (gateway/disk-full.ts). */
  diskFull: DiskFull;
  /**
   * This replica's re-signing of the TUF timestamp and snapshot failing: since when and why
   * (ota/refresh-timer.ts); undefined while it works or another replica signs. /healthz and the
   * dashboard say it.
   */
  tufFailing?: () => RefreshFailure | undefined;
  /** [uptane] polling_seconds written into new devices' sota.toml. */
  pollingSeconds: number;
  /** Staged rollouts (gateway/rollouts/); /admin/rollouts answers 503 without them. */
  rollouts?: RolloutService;
}

/** An authenticated API caller; `tokenId` null for the data dir's admin token. */
export interface Caller {
  role: ApiRole;
  tokenId: string | null;
}

export interface GatewayEnv {
  Bindings: Bindings;
  Variables: {
    gw: Gateway;
    device: DeviceRow;
    /** Set for any authenticated API caller (the registry reads it). */
    admin?: boolean;
    /** The API token's role, set by requireApiToken (gateway/admin/auth.ts). */
    caller?: Caller;
    registrationToken?: RegistrationTokenRow;
  };
}
