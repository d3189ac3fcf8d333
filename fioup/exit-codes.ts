/**
 * fioup's exit-code contract, in one table (STYLE §3). Scripts and the e2e
 * tests rely on these numbers: never renumber, only add.
 *
 * | code | meaning |
 * |---|---|
 * | 0 | success |
 * | 1 | any other error |
 * | 2 | bad usage (unknown flag, missing argument) |
 * | 3 | no update available (check/fetch/update found nothing newer) |
 * | 10 | invalid action for the update's current state, or a saved plan this fioup cannot read |
 * | 11 | not registered |
 * | 12 | already registered (use --force) |
 * | 13 | another fioup holds the update lock |
 * | 20 | config invalid |
 * | 22 | no matching target (hwid/tags/version) |
 * | 24 | no update in progress (install/start/cancel) |
 * | 30 | TUF metadata verification failed (signature, rollback, expiry...) |
 * | 31 | gateway unreachable or refused a request |
 * | 32 | registration failed |
 * | 39 | init failed (app manifest/bundle/compose resolution) |
 * | 40 | fetch failed (network, registry, digest mismatch) |
 * | 41 | not enough space (storage watermark) |
 * | 50 | install failed (rolled back) |
 * | 51 | start failed (rolled back) |
 *
 * @module
 */
import { MetadataFetchError, TufVerificationError } from "../lib/tuf/verification-errors.ts";
import { ConfigError } from "./config.ts";
import { GatewayError, NotRegisteredError } from "./device-client.ts";
import { LockedError } from "./lock.ts";
import { AlreadyRegisteredError, RegistrationError } from "./register.ts";
import { NoUpdateError, NoUpdateInProgressError } from "./update/check-step.ts";
import { FetchFailedError } from "./update/fetch-step.ts";
import { InitFailedError } from "./update/init-step.ts";
import { PlanFormatError } from "./update/plan.ts";
import { InstallFailedError } from "./update/install-step.ts";
import { NoSpaceError } from "./update/space.ts";
import { StartFailedError } from "./update/start-step.ts";
import { InvalidStateError } from "./update/states.ts";
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
} as const;

// Subclasses before their parents.
const EXIT_CODES: [new (...args: any[]) => Error, number][] = [
  [NoUpdateError, EXIT.NO_UPDATE],
  [InvalidStateError, EXIT.INVALID_STATE],
  [PlanFormatError, EXIT.INVALID_STATE],
  [NotRegisteredError, EXIT.NOT_REGISTERED],
  [AlreadyRegisteredError, EXIT.ALREADY_REGISTERED],
  [LockedError, EXIT.LOCKED],
  [ConfigError, EXIT.CONFIG],
  [TargetNotFoundError, EXIT.NO_MATCHING_TARGET],
  [NoUpdateInProgressError, EXIT.NO_UPDATE_IN_PROGRESS],
  [MetadataFetchError, EXIT.GATEWAY],
  [TufVerificationError, EXIT.TUF_VERIFICATION],
  [GatewayError, EXIT.GATEWAY],
  [RegistrationError, EXIT.REGISTRATION],
  [InitFailedError, EXIT.INIT_FAILED],
  [NoSpaceError, EXIT.NO_SPACE],
  [FetchFailedError, EXIT.FETCH_FAILED],
  [InstallFailedError, EXIT.INSTALL_FAILED],
  [StartFailedError, EXIT.START_FAILED],
];

export const exitCodeFor = (err: unknown): number => EXIT_CODES.find(([cls]) => err instanceof cls)?.[1] ?? EXIT.ERROR;
