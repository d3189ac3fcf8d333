/**
 * The `gateway` binary's exit-code contract, in one table that
 * `gateway --help` prints. Scripts rely on these numbers: never renumber, only
 * add. Subclasses come before their parents.
 *
 * @module
 */
import { AdminApiError, GatewayUnreachableError } from "../lib/api/admin-client.ts";
import { isLinkFailure } from "../lib/net/why.ts";
import { CaFetchError, CaPinMismatchError, InvalidTokenError, NotAGatewayError } from "../lib/tls/pin.ts";
import { InvalidDurationError } from "../lib/api/duration.ts";
import { NoSuchTargetError } from "./export/export-bundle.ts";
import { CeremonyFileError } from "./ota/ceremony-files.ts";
import { PUBLISH_EXIT_CODES } from "./publish/exit-codes.ts";

type ErrorClass = new (...args: any[]) => Error;

const BY_CLASS: [ErrorClass, number][] = [
  [CaPinMismatchError, 5],
  [NotAGatewayError, 5],
  [GatewayUnreachableError, 4],
  [CaFetchError, 4],
  [AdminApiError, 3],
  // Flag values the CLI checks itself (the gateway's own refusals arrive as AdminApiError).
  [InvalidDurationError, 2],
  [InvalidTokenError, 2],
  // A file named to `keys init-root`/`sign-root`/`push-root` that is not there or not a root.json
  // (a key file, a passphrase: the easy slip in a ceremony folder), or an --out draft in the way.
  [CeremonyFileError, 2],
  [NoSuchTargetError, 20],
  ...PUBLISH_EXIT_CODES.flatMap(([classes, code]) => classes.map((cls): [ErrorClass, number] => [cls, code])),
];

/** [code, meaning] as `--help` shows them. */
export const EXIT_CODES = [
  [0, "success"],
  [1, "any other error"],
  [2, "bad usage (unknown command or flag, missing argument)"],
  [3, "the gateway refused the request (its reason is printed)"],
  [4, "the gateway could not be reached (connection refused, timeout, TLS failure)"],
  [5, "--server is not the gateway the token was made for: its CA does not match the token's pin, or it serves no CA (no gateway at that URL)"],
  ...PUBLISH_EXIT_CODES.map(([, code, meaning]) => [code, meaning] as const),
  [20, "export: the gateway has no target with that version (or --from version) for the hardware id (the versions it has are printed)"],
  [130, "stopped by Ctrl-C (SIGINT): what the command had made is removed (publish: no target added; export: no --out left)"],
  [143, "stopped by SIGTERM (a cancelled CI job), as 130"],
] as const;

/** An error of no class above that is the network's failure (isLinkFailure: refused, reset, timed out, no such host) is exit 4, "could not be reached". */
export function exitCodeFor(err: unknown): number {
  const hit = BY_CLASS.find(([cls]) => err instanceof cls)?.[1];
  if (hit) return hit;
  return isLinkFailure(err) ? 4 : 1;
}
