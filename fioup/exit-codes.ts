/**
 * fioup's exit-code contract, in one table shown by `fioup --help`.
 * Scripts and the e2e tests rely on these numbers: never renumber, only add.
 * Within the table, list subclasses before their parents.
 *
 * @module
 */
import { InvalidBundleError } from "../lib/bundle/errors.ts";
import { MetadataFetchError, TufVerificationError } from "../lib/tuf/verification-errors.ts";
import { ConfigError } from "./config.ts";
import { DeviceDbFullError } from "./db.ts";
import { GatewayUnreachableError } from "../lib/api/admin-client.ts";
import { GatewayError, NotRegisteredError } from "./device-client.ts";
import { isLinkFailure, proxyWithoutBackend } from "../lib/net/why.ts";
import { EngineError } from "./runtime/docker-engine.ts";
import { DownloadStalledError, IncompleteBlobError } from "../lib/oci/blob-store.ts";
import { RegistryError, RegistryUnreachableError } from "../lib/oci/registry-client.ts";
import { LockedError } from "../lib/fs/pid-lock.ts";
import { AlreadyRegisteredError, RegistrationError } from "./register.ts";
import { NoDeviceStateError } from "./session.ts";
import { NoUpdateError, NoUpdateInProgressError } from "./update/check-step.ts";
import { diskFilled, FetchFailedError, permanentReason } from "./update/fetch-step.ts";
import { UpdateDeferredError } from "./update/hold.ts";
import { InitFailedError } from "./update/init-step.ts";
import { PlanFormatError } from "./update/plan.ts";
import { InstallFailedError } from "./update/install-step.ts";
import { NoSpaceError } from "./update/space.ts";
import { StartFailedError } from "./update/start-step.ts";
import { InterruptedError, InvalidStateError } from "./update/states.ts";
import { TargetNotFoundError } from "./update/tuf-check.ts";

export const EXIT = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  NO_UPDATE: 3,
  INVALID_STATE: 10,
  NOT_REGISTERED: 11,
  ALREADY_REGISTERED: 12,
  LOCKED: 13,
  DEFERRED: 14,
  CONFIG: 20,
  NO_MATCHING_TARGET: 22,
  NO_UPDATE_IN_PROGRESS: 24,
  TUF_VERIFICATION: 30,
  GATEWAY: 31,
  REGISTRATION: 32,
  INIT_FAILED: 39,
  FETCH_FAILED: 40,
  NO_SPACE: 41,
  INSTALL_FAILED: 50,
  START_FAILED: 51,
  INTERRUPTED: 130,
} as const;

type ErrorClass = new (...args: any[]) => Error;

const TABLE = [
  [EXIT.OK, "success", []],
  [EXIT.ERROR, "any other error", []],
  [EXIT.USAGE, "bad usage (unknown flag, missing or invalid argument, --offline DIR not a complete bundle)", [InvalidBundleError]],
  [EXIT.NO_UPDATE, "no update available (check/fetch/update found nothing newer)", [NoUpdateError]],
  [EXIT.INVALID_STATE, "invalid action for the update's current state, or a saved plan this fioup cannot read", [InvalidStateError, PlanFormatError]],
  [EXIT.NOT_REGISTERED, "not registered, or no device state where --sota-dir points (the folder does not exist)", [NotRegisteredError, NoDeviceStateError]],
  [EXIT.ALREADY_REGISTERED, "already registered (use --force)", [AlreadyRegisteredError]],
  [EXIT.LOCKED, "another fioup holds the update lock, another daemon runs, or another agent runs with the same state dir", [LockedError]],
  [EXIT.DEFERRED, "install deferred: outside the maintenance window, a clock not set yet, or held by an update lock (fetched; --force installs)", [UpdateDeferredError]],
  [EXIT.CONFIG, "config invalid", [ConfigError]],
  [EXIT.NO_MATCHING_TARGET, "no matching target (hwid/tags/version)", [TargetNotFoundError]],
  [EXIT.NO_UPDATE_IN_PROGRESS, "no update in progress (install/start/cancel)", [NoUpdateInProgressError]],
  [EXIT.TUF_VERIFICATION, "TUF metadata verification failed (signature, rollback, expiry...)", [TufVerificationError]],
  [EXIT.GATEWAY, "gateway unreachable or refused a request", [GatewayError, GatewayUnreachableError]],
  [EXIT.REGISTRATION, "registration failed", [RegistrationError]],
  [EXIT.INIT_FAILED, "init failed (app manifest/bundle/compose resolution)", [InitFailedError]],
  [EXIT.FETCH_FAILED, "fetch failed (network, registry, digest mismatch)", [FetchFailedError]],
  [EXIT.NO_SPACE, "not enough space (storage watermark), the disk filled during the fetch, or the file system holding fioup.db is full", [NoSpaceError, DeviceDbFullError]],
  [EXIT.INSTALL_FAILED, "install failed (rolled back)", [InstallFailedError]],
  [EXIT.START_FAILED, "start failed (rolled back)", [StartFailedError]],
  [EXIT.INTERRUPTED, "interrupted by Ctrl-C or SIGTERM: the update stays saved, the same command resumes it", [InterruptedError]],
] as const satisfies readonly (readonly [number, string, readonly ErrorClass[]])[];

/** [code, meaning], as `fioup --help` shows them. */
export const EXIT_CODES: readonly (readonly [number, string])[] = TABLE.map(([code, meaning]) => [code, meaning] as const);

// A metadata fetch failure is a TufVerificationError subclass but means "unreachable": it comes first.
const BY_CLASS: [ErrorClass, number][] = [
  [MetadataFetchError, EXIT.GATEWAY],
  ...TABLE.flatMap(([code, , errors]) => errors.map((cls): [ErrorClass, number] => [cls, code])),
];

/**
 * A fetch the disk stopped (full while a blob came in or a layer was rebuilt from a delta) is
 * said as the space check before it would have said it: a script frees space on 41 and retries.
 */
const diskFilledInFetch = (err: unknown): boolean => err instanceof FetchFailedError && diskFilled(err);

/** An error of no other class (a bare write SQLite or the OS refused) that is a full disk exits 41 too, not 1. */
export const exitCodeFor = (err: unknown): number =>
  diskFilledInFetch(err) ? EXIT.NO_SPACE : BY_CLASS.find(([cls]) => err instanceof cls)?.[1] ?? (diskFilled(err) ? EXIT.NO_SPACE : EXIT.ERROR);

/**
 * Whether a failed update is the network's: the gateway or its registry unreachable (exit 31's
 * "unreachable" half), a download cut, stalled or refused on the way, a proxy with no backend
 * (502-504). Such a failure may heal in seconds, so the daemon tries again soon (daemon.ts). Not
 * the network's: a gateway that refused (403), a target that fails every time (permanentReason:
 * marked bad the second time), a full disk: those wait for the next poll.
 */
export function isNetworkFailure(err: unknown): boolean {
  if (diskFilled(err)) return false;
  for (let e = err, n = 0; e !== undefined && e !== null && n < 10; e = (e as Error).cause, n++) {
    if (permanentReason(e) !== undefined) return false;
    // The container engine's socket is local: its refused or reset connection (dockerd down or
    // restarting) is the device's trouble, not the link's, and an install or start that failed
    // was rolled back; retrying either every few seconds would only stop and restore the apps again.
    if (e instanceof EngineError || e instanceof InstallFailedError || e instanceof StartFailedError) return false;
    if (e instanceof GatewayUnreachableError || e instanceof RegistryUnreachableError || e instanceof DownloadStalledError || e instanceof IncompleteBlobError) return true;
    // No status: no answer came. An answer's status is the network's only from a proxy without a backend.
    if (e instanceof MetadataFetchError && e.status === undefined) return true;
    if ((e instanceof MetadataFetchError || e instanceof GatewayError || e instanceof RegistryError) && proxyWithoutBackend(e.status ?? 0)) return true;
    if (isLinkFailure(e)) return true;
  }
  return false;
}
