/**
 * A command's flag values checked, before anything is asked of a server, against the same schema
 * the server (or the file that will hold them) checks them with: a bad value is bad usage (exit 2)
 * with the rule in the message (`--tag: expected a tag (letters, digits, . _ -; ...), got "eu/west"`),
 * not a refusal from the far end, or a value stored that nothing will ever match.
 *
 * @module
 */
import type { TSchema } from "@sinclair/typebox";
import { InvalidDurationError, parseDuration } from "../api/duration.ts";
import { firstValueProblem } from "../api/schema-problem.ts";
import { isRegistryHost, REGISTRY_HOST_RULE } from "../oci/reference.ts";
import { asUsage, UsageError } from "./command.ts";

/**
 * Seconds in a duration flag (lib/api/duration.ts), or a UsageError naming `what`. A person types
 * its unit: `--expires 30` is refused ("give its unit: 30s, 30m, 30h, 30d or 30w"), not read as 30 s.
 *
 * @example
 * ```ts
 * durationFlag("--soak", "30m"); // 1800
 * ```
 */
export function durationFlag(what: string, value: string, opts: { allowZero?: boolean } = {}): number {
  return asUsage([InvalidDurationError], () => parseDuration(value, { ...opts, unitRequired: true }), `${what}: `);
}

/**
 * Throws a UsageError naming `what` (a flag, or an argument's name) for the first of `values`
 * that `schema` refuses.
 *
 * @example
 * ```ts
 * checkFlagValues("--tag", Tag, ["main", "eu/west"]); // throws: --tag: expected a tag (...), got "eu/west"
 * ```
 */
export function checkFlagValues(what: string, schema: TSchema, values: readonly string[]): void {
  const problem = firstValueProblem(schema, values);
  if (problem) throw new UsageError(`${what}: ${problem}`);
}

/**
 * Throws a UsageError naming `what` for the first of `hosts` that does not name a registry as
 * image references do (`host[:port]`, {@link isRegistryHost}): a plain-HTTP registry given as a URL
 * would match no image's registry, which would then stay on https.
 *
 * @example
 * ```ts
 * checkRegistryHosts("--insecure-registry", ["http://127.0.0.1:5000"]); // throws: --insecure-registry: expected a registry host[:port] ...
 * ```
 */
export function checkRegistryHosts(what: string, hosts: readonly string[]): void {
  const bad = hosts.find((h) => !isRegistryHost(h));
  if (bad !== undefined) throw new UsageError(`${what}: ${REGISTRY_HOST_RULE}, got "${bad}"`);
}

/**
 * A gateway's URL as a user gives it (`--server`): `https://HOST[:PORT]`, with a path for a
 * gateway behind a proxy under one (`https://host/ota`). The gateway serves HTTPS only, so
 * `http://` is refused before a connection that would only be closed unanswered. One check for
 * every command that takes a gateway's URL.
 *
 * @example
 * ```ts
 * checkGatewayUrl("--server", "https://127.0.0.1:8443").host; // "127.0.0.1:8443"
 * checkGatewayUrl("--server", "http://127.0.0.1:8443"); // throws: --server http://127.0.0.1:8443: the gateway speaks HTTPS only: use https://127.0.0.1:8443
 * ```
 * @throws {UsageError} If it is not a URL, not an https:// one, or has a user, password, query or fragment.
 */
export function checkGatewayUrl(what: string, value: string): URL {
  const url = URL.parse(value);
  if (url?.protocol === "http:" && url.host)
    throw new UsageError(`${what} ${value}: the gateway speaks HTTPS only: use https://${url.host}${url.pathname === "/" ? "" : url.pathname}`);
  if (url?.protocol !== "https:" || !url.host) throw new UsageError(`${what} ${value}: expected https://HOST[:PORT]`);
  // Paths are appended to the URL as given: a query or fragment ended in the middle of every
  // request path (https://gw?x=1/ca.pem), and a user:password would be said in every message.
  const meant = `https://${url.host}${url.pathname === "/" ? "" : url.pathname}`;
  if (url.username || url.password) throw new UsageError(`${what}: a gateway URL holds no user or password (the token is --token): use ${meant}`);
  if (url.search || url.hash) throw new UsageError(`${what} ${value}: a gateway URL has no query (?) or fragment (#): use ${meant}`);
  return url;
}
