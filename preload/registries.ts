/**
 * Registry clients for preload. With `--server` the gateway's registry is
 * reached with its API token (viewer, publish or admin) over the CA its pin vouches for. Without it
 * (targets from files), the target's registries still need credentials and a
 * trusted CA: `--registry-token` (default `--token`) and `--ca`, or, when the
 * token carries a CA pin, the registry host's own `/ca.pem` checked against
 * that pin. A TLS failure says which of these is missing.
 *
 * @module
 */
import { parseReference } from "../lib/oci/reference.ts";
import { gatewayRegistryClients, registryClients, type RegistryClients, type RegistryHostOptions } from "../lib/oci/registry-clients.ts";
import { CaFetchError, fetchPinnedCa, parsePinnedToken } from "../lib/tls/pin.ts";

/** A registry's TLS certificate was not trusted. */
export class RegistryTlsError extends Error {
  override name = "RegistryTlsError";
}

export interface RegistryAccessOptions {
  /**
   * The gateway (`--server`) and its API token and pinned CA, if given; `publicHost`: the host of
   * its public URL (whoami), by which the targets name its registry when --server is another
   * address (a replica's own, behind a load balancer): read through --server.
   */
  gateway?: { host: string; token: string; ca: string; publicHost?: string };
  /**
   * The other registries that use the gateway as their token realm: the hosts the target's app
   * URIs name (an external registry). Only they get the gateway token there (gatewayRegistryClients).
   */
  realmHosts?: ReadonlySet<string>;
  /** Token for other registries (`--registry-token`; without --server, else `--token`). */
  token?: string;
  /** CA PEM trusted for other registries (`--ca`). */
  ca?: string;
  /** Hosts reached over plain HTTP. */
  insecure: Set<string>;
}

/** Picks and caches one client per registry host. */
export class RegistryAccess {
  private readonly pinnedCas = new Map<string, string>();
  /**
   * The client for a registry host a target names; {@link prepare} runs before the first one is
   * made. With --server, the gateway's public host is reached there with the gateway token, and an
   * external registry whose token realm is the gateway (a host the target's app URIs name) gets
   * that token at the realm, over the CA its pin vouches for (gatewayRegistryClients); no other
   * registry is ever sent the gateway token.
   */
  readonly client: RegistryClients;

  constructor(private readonly o: RegistryAccessOptions) {
    const other = (host: string): RegistryHostOptions => {
      const ca = this.pinnedCas.get(host) ?? o.ca;
      return { scheme: o.insecure.has(host) ? "http" : "https", ...(o.token ? { auth: { token: o.token } } : {}), ...(ca ? { tls: { ca } } : {}) };
    };
    const gw = o.gateway;
    this.client = gw
      ? gatewayRegistryClients(
          { serverHost: gw.host, publicUrl: new URL(`https://${gw.publicHost ?? gw.host}`), token: gw.token, ca: gw.ca, realmFor: (host) => o.realmHosts?.has(host) ?? false },
          other,
          { userAgent: "preload" },
        )
      : registryClients(other, { userAgent: "preload" });
  }

  /**
   * Before pulling from registries other than the gateway: with a pinned token
   * and no `--ca`, fetches each host's `/ca.pem` and checks it against the pin
   * (a host that serves none keeps the system's trust store).
   *
   * @throws {CaPinMismatchError} If a host serves a CA the token does not pin.
   */
  async prepare(uris: string[]): Promise<void> {
    if (this.o.ca || !this.o.token || !isPinned(this.o.token)) return;
    const hosts = new Set(uris.map((u) => parseReference(u).registry));
    for (const host of hosts) {
      if (host === this.o.gateway?.host || host === this.o.gateway?.publicHost || this.o.insecure.has(host) || this.pinnedCas.has(host)) continue;
      try {
        this.pinnedCas.set(host, await fetchPinnedCa(`https://${host}`, this.o.token));
      } catch (err) {
        if (!(err instanceof CaFetchError)) throw err;
      }
    }
  }
}

function isPinned(token: string): boolean {
  try {
    parsePinnedToken(token);
    return true;
  } catch {
    return false;
  }
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|TLS|SSL/;

/**
 * If `err` (or an error it wraps) is a failed TLS certificate check, a
 * {@link RegistryTlsError} saying what preload needs (only the flags not given
 * already, `given`); otherwise undefined.
 */
export function explainTlsFailure(err: unknown, given: { ca?: boolean; token?: boolean; server?: boolean } = {}): RegistryTlsError | undefined {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if ((typeof code === "string" && TLS_CODES.test(code)) || /certificate/i.test(e.message)) {
      const host = /https:\/\/([^/\s]+)/.exec((err as Error).message)?.[1] ?? "the registry";
      const fixes = [
        // The gateway's registry, or a registry's token realm at the gateway (under a name other than --server's): the factory CA.
        `--ca FILE with the CA that signed it (${given.ca ? "the --ca given did not; " : ""}for the gateway's registry or a token realm at the gateway, the factory CA: its ca.pem)`,
        ...(given.token ? [] : ["--token with the gateway's pinned token so preload fetches that CA and checks it"]),
        ...(given.server ? [] : ["--server URL"]),
      ];
      return new RegistryTlsError(`Cannot reach ${host} over TLS: its certificate is not trusted (${e.message.replace(/^.*: /, "")}). Give ${fixes.join(", or ")}`);
    }
  }
  return undefined;
}
