/**
 * `gateway serve --proxy-listen ADDR`: a plain-HTTP listener for a TLS-terminating proxy
 * (HAProxy, nginx) on a trusted network or on the same host, the way app servers usually sit
 * behind one. The proxy verifies the device's certificate and forwards it in a header; the hop to
 * the gateway then costs no second TLS session (bench/replicas measures the difference).
 *
 * The transport's own HTTP/1.1 server carries it (Bun.listen without TLS, the request loop and
 * deadlines of the TLS port: connection-set.ts), not Bun.serve, for one reason: Bun.serve shows no
 * connection before its first complete request head, so it could neither refuse a client that is
 * not a proxy before reading from it nor count a connection that never finishes a head.
 *
 * Who may talk to it: only the trusted proxies (`--trust-proxy`). A connection from any other
 * address is refused at accept, before anything of it is read: it is written a 403 and closed (at
 * most 100 ms later, at most 256 at a time; past that, closed at once without the 403), so it
 * holds a file descriptor for moments and counts against no cap. A
 * unix socket (`unix:/path`) has no address: it counts as trusted, and its file permissions decide
 * who may connect: it is created with mode 0660 (`socketMode`), owner and group only, whatever the
 * process's umask, so the proxy's user must own it or be in its group.
 *
 * What each request gets is what the TLS transport gives a request from a trusted proxy
 * (requests.ts): `env.peer` from the forwarded certificate header, checked by the same
 * `ForwardedCertVerifier`; the same admission hook before the body (a refused request with a
 * body reaches the app without it, and the connection closes after the answer); `env.connection`
 * so a held request (GET /repo/wait) may take its share of the connections (connection-caps.ts)
 * and learns when the proxy gives up on it. Slow clients are the proxy's job: it buffers request
 * heads and enforces its own timeouts, so a proxy's connection counts as authenticated from
 * accept and only the idle limit applies (raised to the longest push wait).
 *
 * The caps: the proxy's connections are counted at accept by a ConnectionCaps of their own, as
 * the TLS port's are (`--max-connections`, lowered for the open-file limit, plus HEALTH_ROOM),
 * drawing on the open files left for connections that the gateway shares between this listener
 * and the TLS port, so even a trusted proxy cannot take every file descriptor: past it the longest idle of its
 * kept-alive connections is closed for a new one, or the new one cut if all are busy. Of
 * those, at most `--max-connections` (as lowered) may be busy with a request (from its head to
 * the last byte of its answer, a held push and a download included): past it a request is
 * answered 503 with `retry-after`, before its body is read, and its connection closed (the proxy
 * retries or tells the device, which retries), counted in `stats()` for /metrics. The proxy's
 * health check (GET /healthz) passes at the busy cap: a replica at its cap is busy, not down.
 *
 * @module
 */
import type { Socket, TCPSocketListener } from "bun";
import { lstatSync } from "node:fs";
import { chmod, lstat, stat, unlink } from "node:fs/promises";
import { connect } from "node:net";
import type { Bindings } from "../env.ts";
import type { PlainListenerStats } from "../metrics.ts";
import type { ForwardedCertVerifier } from "../pki/forwarded-cert.ts";
import type { TrustedProxies } from "../trusted-proxies.ts";
import type { Connection } from "./connection.ts";
import { ConnectionCaps, connectionBudget, type ConnectionBudget } from "./connection-caps.ts";
import { ConnectionSet } from "./connection-set.ts";
import { statusLine } from "./http1.ts";
import { DEFAULT_LIMITS, listenError, type Admission, type RequestInfo, type TransportLimits } from "./options.ts";
import { urlHost } from "./url.ts";

/** The longest push wait the app holds (routes/repo-wait.ts MAX_WAIT_SECONDS) plus a margin: the idle limit may not be shorter. */
const MIN_IDLE_SECONDS = 75;
/** The idle limit's largest value, as it was under Bun.serve. */
const MAX_IDLE_SECONDS = 255;
/** How long a refused connection's descriptor is kept for its 403 to be read, and how many may be kept so at once. */
const REFUSED_LINGER_MS = 100;
const REFUSED_MAX = 256;
/** Connections past the busy cap that the caps still take: the proxy's health checks, and its requests answered 503. */
const HEALTH_ROOM = 64;

export class InvalidProxyListenError extends Error {
  override name = "InvalidProxyListenError";
}

/** Where the plain listener listens: a TCP address or a unix socket path. */
export type ProxyListenAddress = { host: string; port: number } | { unix: string };

/**
 * Parses `--proxy-listen`: `HOST:PORT` (`[::1]:PORT` for IPv6; port 0 picks a free one) or `unix:/path`.
 *
 * @example
 * ```ts
 * parseProxyListen("10.0.0.11:8080"); // { host: "10.0.0.11", port: 8080 }
 * parseProxyListen("unix:/run/gateway/proxy.sock"); // { unix: "/run/gateway/proxy.sock" }
 * ```
 * @throws {InvalidProxyListenError} If it is neither.
 */
export function parseProxyListen(value: string): ProxyListenAddress {
  if (value.startsWith("unix:")) {
    const path = value.slice(5);
    if (!path.startsWith("/")) throw new InvalidProxyListenError(`Invalid --proxy-listen "${value}": a unix socket needs an absolute path, e.g. unix:/run/gateway/proxy.sock`);
    return { unix: path };
  }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new InvalidProxyListenError(`Invalid --proxy-listen "${value}": expected HOST:PORT (e.g. 10.0.0.11:8080) or unix:/path`);
  return { host: m[1] ?? m[2]!, port };
}

export interface PlainListenOptions {
  address: ProxyListenAddress;
  /** The proxies allowed to connect over TCP (required for a TCP address; unix sockets are trusted). */
  trustedProxies: TrustedProxies;
  /** Default `x-client-cert`. */
  clientCertHeader?: string;
  forwardedCerts: ForwardedCertVerifier;
  fetch(request: Request, env: Bindings): Response | Promise<Response>;
  admit?(request: RequestInfo, env: Bindings): Admission | Promise<Admission>;
  /** Mode of the unix socket (default 0660: the gateway's user and group; never world-writable unless asked). */
  socketMode?: number;
  /** `maxConnections` sets the held share (push); `idleTimeoutMs` the idle limit (raised to 75 s, at most 255 s). */
  limits?: Partial<TransportLimits>;
  /** The open files for connections, shared with the TLS port (connection-caps.ts); default: the open-file limit's, for this listener alone. */
  connectionBudget?: ConnectionBudget;
}

export interface PlainListening {
  /** `http://host:port` or `unix:/path` */
  url: string;
  stats(): PlainListenerStats;
  /** Stops accepting; in-flight requests get `graceMs` to finish, then every connection is closed. */
  close(graceMs?: number): Promise<void>;
}

/** The default mode of the unix socket: the gateway's user and group may connect, nobody else. */
export const DEFAULT_SOCKET_MODE = 0o660;

/** Everyone on a unix socket: its file mode decides who connects. */
const EVERYONE = { has: () => true };

/** The answer to a client that is not a trusted proxy, written at accept without reading anything of it. */
function forbidden(address: string): Buffer {
  const body = JSON.stringify({
    error: `Forbidden: ${address || "this client"} is not a trusted proxy (--trust-proxy); this port serves only the TLS-terminating proxy, devices connect to the proxy`,
  });
  return Buffer.from(`${statusLine(403)}content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

/**
 * The requirement on who may use the listener, checked before anything starts (`gateway serve`
 * raises it as a usage error) and again by {@link listenPlain}.
 *
 * @throws {InvalidProxyListenError} For a TCP address without trusted proxies (anyone could then
 *   claim any device), or a socket path where a file or folder is.
 */
export function checkProxyListen(address: ProxyListenAddress, trustedProxies: TrustedProxies): void {
  if (!("unix" in address) && trustedProxies.size === 0)
    throw new InvalidProxyListenError("--proxy-listen on a TCP address needs --trust-proxy with the proxy's addresses: anyone who can connect could claim to be any device");
  // The gateway makes the socket; an old socket there is taken over, anything else is never
  // replaced. Binding on a file failed as "a server answers on that socket already", after the
  // data dir was made.
  if ("unix" in address) {
    const st = lstatSync(address.unix, { throwIfNoEntry: false });
    if (st && !st.isSocket())
      throw new InvalidProxyListenError(
        `Invalid --proxy-listen "unix:${address.unix}": ${address.unix} is ${st.isDirectory() ? "a folder" : "a file"}, not a socket; give a path of its own (the gateway makes the socket there), e.g. unix:/run/gateway/proxy.sock`,
      );
  }
}

/**
 * Starts the plain-HTTP listener.
 *
 * @throws {InvalidProxyListenError} For a TCP address without trusted proxies (anyone could then
 *   claim any device), or a unix socket left world-writable that could not be chmod-ed.
 */
export async function listenPlain(opts: PlainListenOptions): Promise<PlainListening> {
  checkProxyListen(opts.address, opts.trustedProxies);
  const address = opts.address;
  const unix = "unix" in address;
  const asked: TransportLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const idleSeconds = Math.min(MAX_IDLE_SECONDS, Math.max(MIN_IDLE_SECONDS, Math.ceil(asked.idleTimeoutMs / 1000)));
  const limits: TransportLimits = { ...asked, idleTimeoutMs: idleSeconds * 1000 };
  const caps = new ConnectionCaps(limits.maxConnections, limits.maxConnectionsPerAddress, () => true, opts.connectionBudget ?? connectionBudget(), HEALTH_ROOM);
  const busyCap = caps.maxConnections;
  // The proxies are few: remember each address's verdict instead of asking the BlockList per connection.
  const verdicts = new Map<string, boolean>();
  const trusted = (addr: string) => {
    let v = verdicts.get(addr);
    if (v === undefined) {
      v = opts.trustedProxies.has(addr);
      if (verdicts.size >= 1024) verdicts.clear();
      verdicts.set(addr, v);
    }
    return v;
  };
  /** Requests answered 503 by the busy cap (module comment). */
  let capped = 0;
  /** Requests found past the busy cap by the admission below, answered 503 by fetch. */
  const overCap = new WeakSet<Bindings>();
  const admit = opts.admit;
  const set = new ConnectionSet(
    {
      host: unix ? "localhost" : urlHost(address.host),
      scheme: "http",
      trustedProxies: unix ? EVERYONE : opts.trustedProxies,
      forwardedCerts: opts.forwardedCerts,
      ...(opts.clientCertHeader ? { clientCertHeader: opts.clientCertHeader } : {}),
      // Before the body: past the busy cap a request is refused (its body never read) and fetch answers 503.
      admit: (req, env) => {
        if (set.conns.size > busyCap && req.path !== "/healthz" && set.busy() > busyCap) {
          overCap.add(env);
          return { authenticated: true, refuse: true };
        }
        return admit ? admit(req, env) : { authenticated: true };
      },
      fetch: (req, env) => {
        if (!overCap.has(env)) return opts.fetch(req, env);
        capped++;
        return Response.json(
          { error: `Service unavailable: ${busyCap} requests are in flight on this listener (--max-connections); retry` },
          { status: 503, headers: { connection: "close", "retry-after": "1" } },
        );
      },
    },
    limits,
    caps,
  );
  /** Refused connections whose 403 is out, until they close (above). */
  const refused = new Map<Socket<Connection | undefined>, ReturnType<typeof setTimeout>>();
  const socket = {
    open(sock: Socket<Connection | undefined>) {
      const remoteAddr = unix ? "" : sock.remoteAddress;
      if (!unix && !trusted(remoteAddr)) {
        // Refused before anything is read. The 403 and a FIN go out at once; the descriptor is let go
        // when the client closes, or REFUSED_LINGER_MS later (closing it with the client's bytes
        // unread would reset the connection before the client reads the 403). Past REFUSED_MAX such
        // lingering ones (a flood), it is just closed.
        if (refused.size >= REFUSED_MAX) return sock.terminate();
        sock.write(forbidden(remoteAddr));
        sock.shutdown();
        refused.set(sock, setTimeout(() => sock.terminate(), REFUSED_LINGER_MS));
        return;
      }
      sock.data = set.open(sock, remoteAddr, true);
    },
    data(sock: Socket<Connection | undefined>, data: Buffer) {
      if (sock.data) set.loop.onData(sock.data, data);
    },
    drain(sock: Socket<Connection | undefined>) {
      sock.data?.flush();
    },
    close(sock: Socket<Connection | undefined>) {
      if (sock.data) set.closed(sock.data);
      const t = refused.get(sock);
      if (t) {
        clearTimeout(t);
        refused.delete(sock);
      }
    },
    error() {
      // a reset is the client's problem, not a crash; close follows
    },
  };
  const bind = () => {
    if (!unix) return Bun.listen<Connection | undefined>({ hostname: address.host, port: address.port, socket });
    // The socket is fully trusted: bind it with others shut out (umask 0117, so never wider than
    // 0660 even for a moment), then give it exactly the mode asked for.
    const umask = process.umask(0o117);
    try {
      return Bun.listen<Connection | undefined>({ unix: address.unix, socket });
    } finally {
      process.umask(umask);
    }
  };
  let listener: ReturnType<typeof bind>;
  const where = unix ? address.unix : `${urlHost(address.host)}:${address.port}`;
  try {
    try {
      listener = bind();
    } catch (err) {
      // A socket file left by a gateway that did not stop cleanly: take it over if nobody answers on it.
      if (!unix || (err as { code?: string }).code !== "EADDRINUSE") throw listenError(err, where);
      const isSocket = await lstat(address.unix).then((st) => st.isSocket(), () => false);
      if (!isSocket || (await socketAnswers(address.unix))) throw listenError(err, where);
      await unlink(address.unix);
      listener = bind();
    }
  } catch (err) {
    set.abandon();
    throw err;
  }
  if (unix) {
    const mode = opts.socketMode ?? DEFAULT_SOCKET_MODE;
    try {
      await chmod(address.unix, mode);
    } catch (err) {
      // Without the chmod the umask decided: a socket anyone may write to lets anyone be any device.
      const st = await stat(address.unix).catch(() => undefined);
      if (!st || (st.mode & 0o002 && !(mode & 0o002))) {
        listener.stop(true);
        set.abandon();
        throw new InvalidProxyListenError(`Cannot set mode ${mode.toString(8)} on ${address.unix} (${(err as Error).message}) and it is world-writable: refusing to serve on it`);
      }
    }
  }
  const url = unix ? `unix:${where}` : `http://${urlHost((listener as TCPSocketListener<unknown>).hostname)}:${(listener as TCPSocketListener<unknown>).port}`;
  return {
    url,
    stats: () => ({ busy: set.busy(), capped: capped + caps.capped, held: caps.held, holdsRefused: caps.holdsRefused }),
    close: (graceMs = 10_000) => {
      listener.stop(false);
      return set.close(graceMs);
    },
  };
}

/** Whether a process accepts connections on the unix socket at `path`. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(path, () => {
      sock.destroy();
      resolve(true);
    });
    sock.on("error", () => resolve(false));
  });
}
