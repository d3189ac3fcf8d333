/**
 * preload's exit-code contract, in one table shown by `preload --help`.
 * Factory build scripts rely on these numbers: never renumber, only add.
 * Within the table, list subclasses before their parents.
 *
 * @module
 */
import { InvalidBundleError } from "../lib/bundle/errors.ts";
import { FactoryConfigError } from "../lib/factory-config/index.ts";
import { AppResolveError } from "../lib/device/resolve.ts";
import { DigestMismatchError } from "../lib/oci/digest.ts";
import { RegistryError, RegistryUnreachableError } from "../lib/oci/registry-client.ts";
import { CaFetchError, CaPinMismatchError, InvalidTokenError } from "../lib/tls/pin.ts";
import { TufVerificationError } from "../lib/tuf/verification-errors.ts";
import { AssembleError, CorruptCacheError } from "./assemble.ts";
import { BaseRootfsError } from "./base.ts";
import { OutputError } from "./output.ts";
import { RegistryTlsError } from "./registries.ts";
import { GatewayAccessError, NoTargetError, TargetsVerificationError } from "./targets.ts";

type ErrorClass = new (...args: any[]) => Error;

const TABLE: [code: number, meaning: string, errors: ErrorClass[]][] = [
  [0, "success (also: the ref's rules say no system image)", []],
  [1, "any other error", []],
  [2, "bad usage (unknown flag, missing or invalid argument, a --factory-config with neither a containers nor an lmp section, a --token without a CA pin, --bundle DIR not a complete bundle, a --base without /usr/bin/fioup and no --fioup, a --fioup that is no fioup or of another architecture)", [InvalidTokenError, InvalidBundleError]],
  [10, "factory-config.yml is invalid (one that is not there is bad usage, 2)", [FactoryConfigError]],
  [20, "no target for the hardware id, tag and version (without --target: none that no rollout holds back), or an app asked for is not in it", [NoTargetError, AssembleError]],
  [21, "the targets do not verify against the TUF root (signature, expiry, rollback)", [TargetsVerificationError, TufVerificationError]],
  [30, "the gateway or a registry cannot be reached, or its TLS identity is not the expected one; the gateway refuses the token or is no gateway", [GatewayAccessError, CaPinMismatchError, CaFetchError, RegistryTlsError, RegistryUnreachableError]],
  [31, "a registry refused a request or served content that does not match its digest", [RegistryError, DigestMismatchError, AppResolveError]],
  [40, "a blob in the cache is corrupt (remove it and retry)", [CorruptCacheError]],
  [50, "the base rootfs cannot be read or is no root filesystem (one that is not there is bad usage, 2), or the image cannot be written (--out in the way or a registered device's root, no space left, more than an ext4 --size holds)", [BaseRootfsError, OutputError]],
  [130, "stopped by Ctrl-C (SIGINT): the unfinished image is removed, --out is as it was", []],
  [143, "stopped by SIGTERM: likewise", []],
];

/** [code, meaning], as `preload --help` shows them. */
export const EXIT_CODES: readonly (readonly [number, string])[] = TABLE.map(([code, meaning]) => [code, meaning] as const);

const BY_CLASS = TABLE.flatMap(([code, , errors]) => errors.map((cls) => [cls, code] as const));

export const exitCodeFor = (err: unknown): number => BY_CLASS.find(([cls]) => err instanceof cls)?.[1] ?? 1;
