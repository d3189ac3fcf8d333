/**
 * The one way a binary builds its registry clients: a policy says how to
 * reach each host (scheme, credentials, TLS), and a cache hands out one
 * client per host, so the token cache and kept-alive connections are shared
 * by everything that talks to that registry. `gateway publish`, `preload` and
 * fioup differ only in their policy.
 *
 * @module
 */
import { RegistryClient, type RegistryClientOptions } from "./registry-client.ts";

/** How to reach one registry host: everything of {@link RegistryClientOptions} but the host. */
export type RegistryHostOptions = Omit<RegistryClientOptions, "registry">;

/** Returns the client for a host, creating it on first use. */
export type RegistryClients = (host: string) => RegistryClient;

/**
 * Makes the per-host client cache for a policy.
 *
 * @example
 * ```ts
 * const clientFor = registryClients((host) => (host === gatewayHost ? { auth: { token }, tls: { ca } } : {}), { userAgent: "preload" });
 * await clientFor("127.0.0.1:8443").getManifest("main/app", "latest");
 * ```
 */
export function registryClients(policy: (host: string) => RegistryHostOptions, defaults: RegistryHostOptions = {}): RegistryClients {
  const cache = new Map<string, RegistryClient>();
  return (host) => {
    let c = cache.get(host);
    if (!c) {
      c = new RegistryClient({ ...defaults, ...policy(host), registry: host });
      cache.set(host, c);
    }
    return c;
  };
}
