/**
 * What the transport is given and what it gives back: the listen options, the
 * connection limits with their defaults, and the admission hook through which
 * the app says, before a request's body is read, whether the client proved who
 * it is and whether the request is refused anyway.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { urlHost } from "./url.ts";
import type { ConnectionBudget } from "./connection-caps.ts";
import type { Bindings } from "../env.ts";
import type { ForwardedCertVerifier } from "../pki/forwarded-cert.ts";
import type { TrustedProxies } from "../trusted-proxies.ts";

/** Deadlines and caps of the transport, in milliseconds and connections. */
export interface TransportLimits {
  /** A client not yet authenticated has this long to send a complete request head (counted from connect, TLS handshake included, or from the end of the previous answer). */
  headTimeoutMs: number;
  /** A request from a client not authenticated must have its whole body in this long after its head. */
  bodyTimeoutMs: number;
  /** Authenticated clients: keep-alive idle time, the time to send a request head, and the longest pause while sending a body or reading an answer. */
  idleTimeoutMs: number;
  /** Open connections in all; past it, the oldest unauthenticated connection is closed for a new one (one still in its TLS handshake only after the idle ones, for its first few seconds), else the longest idle one (or the new one is refused, if none is either). */
  maxConnections: number;
  /** Unauthenticated connections from one address; past it, that address's oldest is closed. A proxy that presents its proxy certificate is authenticated; the plain listener (plain.ts) exempts its trusted proxies. */
  maxConnectionsPerAddress: number;
}

export const DEFAULT_LIMITS: Readonly<TransportLimits> = Object.freeze({
  headTimeoutMs: 10_000,
  bodyTimeoutMs: 30_000,
  idleTimeoutMs: 75_000,
  // Devices holding push (GET /repo/wait) keep a connection each, ~10-20 MB per 1,000: 50,000 is
  // about 1 GB and 45,000 held devices (docs/capacity.md). Lowered to fit the open-file limit (connection-caps.ts).
  maxConnections: 50_000,
  maxConnectionsPerAddress: 128,
});

/** A request as the admission hook sees it: the head only. */
export interface RequestInfo {
  method: string;
  /** The path of the request target, without the query. */
  path: string;
  /** A header's value, case-insensitive name; a repeated header's values joined by ", " (as the Headers class does). */
  header(name: string): string | undefined;
}

/**
 * A request as the app's head handler sees it (TransportOptions.fetchHead): the parsed head and
 * its whole body, with no web `Request` built. `headers.get` is case-insensitive, and joins a repeated header's values with ", " as the Headers class does.
 */
export interface HeadRequest {
  readonly method: string;
  /** The path of the request target as sent (not decoded), without the query. */
  readonly path: string;
  /** The query string without its "?" ("" without one). */
  readonly query: string;
  readonly headers: { get(name: string): string | null };
  /** The body, read whole before the call (empty without one). */
  readonly body: Uint8Array;
}

/**
 * An answer the transport writes as is: the status line, `head` (the answer's own header lines,
 * each ending in CRLF, without date, connection or content-length, which the transport adds) and
 * the body. A handler that answers the same few shapes all day builds each `head` once.
 */
export interface HeadAnswer {
  readonly status: number;
  readonly head: string;
  readonly body: Uint8Array | null;
}

/** The app's verdict on a request head, before its body is read. */
export interface Admission {
  /** The client proved who it is (a certificate of a device in good standing, a valid token): the longer deadlines apply to this connection from now on. */
  authenticated: boolean;
  /** The app refuses this request whatever its body: it is handed to the app without a body (the app answers, e.g. 401) and the body is never read. */
  refuse?: boolean;
}

/** The header a trusted proxy forwards the client certificate in, unless --client-cert-header names another. */
export const DEFAULT_CLIENT_CERT_HEADER = "x-client-cert";

export interface TransportOptions {
  host: string;
  port: number;
  cert: string;
  key: string;
  /** PEM of the CA that issued device certificates. */
  clientCa: string;
  fetch(request: Request, env: Bindings): Response | Promise<Response>;
  /** Asked once per request, after its head and before its body; without it every client counts as unauthenticated and nothing is refused early. */
  admit?(request: RequestInfo, env: Bindings): Admission | Promise<Admission>;
  /**
   * Optional: tried before `fetch` for an admitted request whose body is small enough to be read
   * whole; answers from the parsed head (a `HeadAnswer`, or a `Response`) without a web `Request`,
   * or returns undefined at once (not from a promise: the header list is dropped while a held
   * answer is awaited), and the request goes to `fetch` as usual. For the few routes a fleet calls
   * all day (the device check-in), where building a `Request` and reading a `Response` cost more
   * than the work.
   */
  fetchHead?(request: HeadRequest, env: Bindings): HeadAnswer | Response | Promise<HeadAnswer | Response> | undefined;
  /** Proxy mode: addresses whose forwarded certificate header is honoured. */
  trustedProxies?: Pick<TrustedProxies, "has">;
  /** Default {@link DEFAULT_CLIENT_CERT_HEADER}. */
  clientCertHeader?: string;
  forwardedCerts?: ForwardedCertVerifier;
  limits?: Partial<TransportLimits>;
  /** The open files for connections, when another listener of the process shares them (connection-caps.ts); default: the open-file limit's, for this listener alone. */
  connectionBudget?: ConnectionBudget;
}

/** Counters since the listener started, and the connections open now. */
export interface TransportStats {
  open: number;
  unauthenticated: number;
  /** Connections closed at accept or evicted by a connection cap. */
  capped: number;
  /** Connections cut by a head, body or stall deadline. */
  timedOut: number;
  /** TLS handshakes completed (full and resumed). */
  handshakes: number;
  /** Of those, resumed from a session ticket or cached session (no certificate exchange). */
  resumed: number;
  /** Requests held open now (push waits), and holds refused since the start because the held share was taken. */
  held: number;
  holdsRefused: number;
  /** The connection cap in force: `maxConnections` as asked, or fewer to fit the open-file limit. */
  maxConnections: number;
}

export interface Listening {
  host: string;
  port: number;
  url: string;
  stats(): TransportStats;
  /** Stops accepting, lets in-flight requests finish (up to `graceMs`), then closes every connection. */
  close(graceMs?: number): Promise<void>;
}

/** The transport could not take its address; the message says which and why, in plain words. */
export class ListenError extends Error {
  override name = "ListenError";
}

/**
 * Bun's listen errors in plain words ("Failed to listen at 127.0.0.1" names neither the port
 * nor the reason): `where` is "127.0.0.1:8443" or a socket path.
 *
 * @example
 * ```ts
 * listenError(err, "127.0.0.1:8443").message; // "Cannot listen on 127.0.0.1:8443: the port is in use (another gateway, or another program)"
 * ```
 */
export function listenError(err: unknown, where: string): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const why =
    code === "EADDRINUSE" ? (where.startsWith("/") ? "a server answers on that socket already" : "the port is in use (another gateway, or another program)")
    : code === "EADDRNOTAVAIL" ? "no network interface of this machine has that address"
    : code === "EACCES" ? (where.startsWith("/") ? "permission denied" : "permission denied (ports under 1024 need root or CAP_NET_BIND_SERVICE)")
    : code === "ENOENT" && where.startsWith("/") ? `the folder ${dirname(where)} does not exist`
    : undefined;
  return why ? new ListenError(`Cannot listen on ${where}: ${why}`) : (err as Error);
}

/**
 * Fails as the real listener would if an address cannot be taken now (a port in use, no such
 * address, a privileged port; a socket whose folder is missing), without keeping it: `gateway
 * serve` asks before it makes a data dir, so a busy port does not leave a fresh CA and keys
 * behind. Port 0 (any free one) always can.
 */
export function checkCanListen(address: { host: string; port: number } | { unix: string }): void {
  if ("unix" in address) {
    if (!existsSync(dirname(address.unix))) throw listenError(Object.assign(new Error(`ENOENT: ${address.unix}`), { code: "ENOENT" }), address.unix);
    return;
  }
  if (address.port === 0) return;
  try {
    Bun.listen({ hostname: address.host, port: address.port, socket: { data() {} } }).stop(true);
  } catch (err) {
    throw listenError(err, `${urlHost(address.host)}:${address.port}`);
  }
}
