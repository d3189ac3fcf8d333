/**
 * The one reading of a registry's failed TLS handshake, shared by `gateway publish` and
 * `gateway export`: a registry speaking plain http (a local docker-registry does) fails the
 * handshake with Bun's bare "EPROTO: The TLS handshake failed", which says nothing of the flag
 * that fixes it. Both commands take `--insecure-registry HOST`, so the hint names it.
 *
 * @module
 */
import { RegistryUnreachableError } from "../../lib/oci/registry-client.ts";

/**
 * `err` with the flag to give, when it is a registry (not already `insecure`) that failed the
 * TLS handshake; otherwise `err` itself. Same class, so the exit code (15) stays.
 *
 * @example
 * ```ts
 * throw plainHttpHint(err, new Set(flags["insecure-registry"])); // "... (if 127.0.0.1:5000 speaks plain http, add --insecure-registry 127.0.0.1:5000)"
 * ```
 */
export function plainHttpHint(err: unknown, insecure: ReadonlySet<string>): unknown {
  if (!(err instanceof RegistryUnreachableError)) return err;
  const host = /https:\/\/([^/\s]+)\//.exec(err.message)?.[1];
  if (!host || insecure.has(host) || !/TLS|EPROTO|SSL/i.test(err.message)) return err;
  return new RegistryUnreachableError(`${err.message} (if ${host} speaks plain http, add --insecure-registry ${host})`, { cause: err });
}
