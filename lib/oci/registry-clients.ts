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

/**
 * The gateway as a tool reached it: its address (`--server`, or the local one `--data` finds), the
 * host its targets name its registry by, and the token and CA that tool holds. Every tool that
 * talks to the gateway's registry, pulling (export, preload) or pushing (publish), has the same
 * two names for it: the public host the targets write, which a build host or a replica's own
 * `--data` may not reach, and the address the tool does reach. Which address that is, and whether
 * a registry is the gateway's at all, is each tool's policy (publish: `--registry`,
 * gateway/publish/publish.ts `gatewayRegistry`); the mapping and who gets the token are here.
 */
export interface GatewayReach {
  /** host[:port] this tool connects to; the public host is reached there. */
  serverHost: string;
  /** Other host[:port]s of the gateway, each reached as written (publish: --server's host while it pushes through a --registry naming the public host). */
  alsoAt?: string[];
  /** The gateway's public URL (whoami), whose host the targets name; the server's own when it says none. */
  publicUrl: URL;
  token: string;
  ca?: string;
  /** The gateway's hosts reached over plain HTTP (a gateway served without TLS); the others over HTTPS. */
  plainHttp?: ReadonlySet<string>;
  /**
   * The other registries this tool knows use the gateway as their token realm (an external
   * registry: publish's --registry, or the host the targets' app URIs name). Only they get the
   * token there: any other registry (one a compose file names) could answer with a challenge
   * naming the gateway's realm and be handed a registry token minted with this tool's token.
   */
  realmFor: (host: string) => boolean;
}

/**
 * The client cache of a tool that reaches the gateway's registry at `serverHost` while targets name
 * it by the public host (a replica's own address behind a load balancer, which the build host or
 * the gateway's own `--data` reaches): that host is mapped to `serverHost`, which (and each of
 * `alsoAt`) gets the token and CA; any other host gets `other`'s options, and those `realmFor`
 * names also the gateway as their token realm at the public origin (an external registry names
 * the gateway by its public URL), where the token and CA go.
 *
 * @example
 * ```ts
 * const clientFor = gatewayRegistryClients({ serverHost: "10.0.0.5:8443", publicUrl: new URL("https://ota.example"), token, ca, realmFor: () => false }, () => ({}));
 * clientFor("ota.example").baseUrl; // "https://10.0.0.5:8443"
 * ```
 */
export function gatewayRegistryClients(gw: GatewayReach, other: (host: string) => RegistryHostOptions, defaults: RegistryHostOptions = {}): RegistryClients {
  const tls = gw.ca ? { tls: { ca: gw.ca } } : {};
  const own = new Set([gw.serverHost, ...(gw.alsoAt ?? [])]);
  const clients = registryClients(
    (host) =>
      own.has(host)
        ? { ...(gw.plainHttp?.has(host) ? { scheme: "http" as const } : {}), auth: { token: gw.token }, ...tls }
        : { ...other(host), ...(gw.realmFor(host) ? { realm: { origin: gw.publicUrl.origin, auth: { token: gw.token }, ...tls } } : {}) },
    defaults,
  );
  return (host) => clients(host === gw.publicUrl.host ? gw.serverHost : host);
}
