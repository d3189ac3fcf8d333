/**
 * `gateway serve --proxy-listen ADDR`: a plain-HTTP listener for a TLS-terminating proxy
 * (HAProxy, nginx) on a trusted network or on the same host, the way app servers usually sit
 * behind one. The proxy verifies the device's certificate and forwards it in a header; the hop to
 * the gateway then costs no second TLS session (bench/replicas measures the difference).
 *
 * Bun.serve carries it: it cannot give a handler the client certificate, but here there is none
 * to give, and its native HTTP parser costs less per request than our TLS transport.
 *
 * Who may talk to it: only the trusted proxies (`--trust-proxy`). A request from any other
 * address is answered 403 and the connection closed, before anything of it reaches the app
 * (its body is never read). A unix socket (`unix:/path`) has no address: it counts as trusted,
 * and its file permissions decide who may connect: it is created with mode 0660 (`socketMode`),
 * owner and group only, whatever the process's umask, so the proxy's user must own it or be in
 * its group.
 *
 * What each request gets is what the TLS transport gives a request from a trusted proxy
 * (requests.ts): `env.peer` from the forwarded certificate header, checked by the same
 * `ForwardedCertVerifier`; the same admission hook before the body (a refused request with a
 * body reaches the app without it, and the connection closes after the answer); `env.connection` so a
 * held request (GET /repo/wait) may take its share of `maxConnections` (connection-caps.ts) and
 * learns through `req.signal` when the proxy gives up on it. Slow clients are the proxy's job:
 * it buffers request heads and enforces its own timeouts, so only an idle limit applies here,
 * longer than the longest push wait.
 *
 * The cap: `maxConnections` (`--max-connections`, as ConnectionCaps lowers it for the open-file
 * limit) bounds the proxy's connections busy with a request here, Bun's count of requests in
 * flight (`server.pendingRequests`: from the head until the answer's last byte is sent, a held push
 * and a download included). Past it a request is answered 503 with `retry-after` and its
 * connection closed (the proxy retries or tells the device, which retries), counted in `stats()`
 * for /metrics. Bun.serve shows no connection before its first request and none between
 * requests: a kept-alive connection of the proxy's pool is not counted while idle (the proxy's own
 * limits bound its pool: HAProxy's `maxconn` on the server line, nginx's `keepalive`), nor is a
 * client that never finishes a request head; TCP connections that send nothing are not even
 * accepted (Bun defers accept to the first byte). That is why the port must be reachable by the
 * proxy alone.
 *
 * @module
 */
import type { Server } from "bun";
import { lstatSync } from "node:fs";
import { chmod, lstat, stat, unlink } from "node:fs/promises";
import { connect } from "node:net";
import type { Bindings, ClientConnection } from "../env.ts";
import type { PlainListenerStats } from "../metrics.ts";
import type { ForwardedCertVerifier } from "../pki/forwarded-cert.ts";
import type { TrustedProxies } from "../trusted-proxies.ts";
import { ConnectionCaps } from "./connection-caps.ts";
import { DEFAULT_LIMITS, listenError, type Admission, type RequestInfo, type TransportLimits } from "./options.ts";
import { urlHost, urlTarget } from "./url.ts";

/** The longest push wait the app holds (routes/repo-wait.ts MAX_WAIT_SECONDS) plus a margin: the idle limit may not be shorter. */
const MIN_IDLE_SECONDS = 75;
/** Bun.serve's largest idleTimeout. */
const MAX_IDLE_SECONDS = 255;

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
}

export interface PlainListening {
  /** `http://host:port` or `unix:/path` */
  url: string;
  stats(): PlainListenerStats;
  /** Stops accepting; in-flight requests get `graceMs` to finish, then every connection is closed. */
  close(graceMs?: number): Promise<void>;
}

const NO_SOCKET = { terminate() {} };

/** One request's connection as a handler sees it (env.connection): the proxy's request, cancelled through `req.signal`. */
class ProxiedRequest implements ClientConnection {
  held = false;
  caps: ConnectionCaps | undefined;
  /** For the caps: there is no socket of ours to cut (a held request is never evicted). */
  readonly sock = NO_SOCKET;
  /** Never idle to the caps (a request, not a connection: Bun.serve keeps the proxy's between requests), so never ended by them. */
  idle = false;
  idlePrev = undefined;
  idleNext = undefined;
  end(): void {}
  #onClose: (() => void) | undefined;
  #listening = false;
  constructor(
    readonly req: Request,
    readonly remoteAddr: string,
    readonly pool: ConnectionCaps,
  ) {}

  get closed(): boolean {
    return this.req.signal.aborted;
  }

  get onClose(): (() => void) | undefined {
    return this.#onClose;
  }

  set onClose(fn: (() => void) | undefined) {
    this.#onClose = fn;
    if (!fn || this.#listening) return;
    // Subscribed only when a handler asks: most requests never touch req.signal.
    this.#listening = true;
    this.req.signal.addEventListener("abort", () => this.#onClose?.(), { once: true });
  }

  hold(): boolean {
    const caps = this.pool;
    if (this.closed || !caps.accept(this)) return false;
    caps.authenticated(this); // counted for the held share only; never a candidate for eviction
    if (caps.hold(this)) return true;
    caps.closed(this);
    return false;
  }

  /** The answer is handed to the server (or the request ended): its held slot is free. */
  done(): void {
    if (this.caps) this.caps.closed(this);
  }
}

/** The answer with `connection: close`: the server closes the connection after it (a body left unread must not be taken for the next request). */
function closing(res: Response): Response {
  const headers = new Headers(res.headers);
  headers.set("connection", "close");
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}

/** The default mode of the unix socket: the gateway's user and group may connect, nobody else. */
export const DEFAULT_SOCKET_MODE = 0o660;

/** GET /healthz, the proxy's health check: a full URL, or the target alone when it came without a Host header. */
const isHealthCheck = (url: string) => urlTarget(url).path === "/healthz";

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
  const unix = "unix" in opts.address;
  const limits: TransportLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const caps = new ConnectionCaps(limits.maxConnections, limits.maxConnectionsPerAddress, () => true);
  const certHeader = (opts.clientCertHeader ?? "x-client-cert").toLowerCase();
  const idleTimeout = Math.min(MAX_IDLE_SECONDS, Math.max(MIN_IDLE_SECONDS, Math.ceil(limits.idleTimeoutMs / 1000)));
  // The proxies are few: remember each address's verdict instead of asking the BlockList per request.
  const verdicts = new Map<string, boolean>();
  const trusted = (address: string) => {
    let v = verdicts.get(address);
    if (v === undefined) {
      v = opts.trustedProxies.has(address);
      if (verdicts.size >= 1024) verdicts.clear();
      verdicts.set(address, v);
    }
    return v;
  };
  /** Requests refused by the cap (module comment). */
  let capped = 0;
  const hostName = "unix" in opts.address ? "localhost" : urlHost(opts.address.host);

  const handle = async (req: Request, server: Server<undefined>): Promise<Response> => {
    const ip = unix ? null : server.requestIP(req);
    const remoteAddr = ip?.address ?? "";
    if (!unix && !trusted(remoteAddr)) {
      return Response.json(
        { error: `Forbidden: ${remoteAddr || "this client"} is not a trusted proxy (--trust-proxy); this port serves only the TLS-terminating proxy, devices connect to the proxy` },
        { status: 403, headers: { connection: "close" } },
      );
    }
    // The cap; this request is among those pending. The proxy's health check passes: a replica at
    // its cap is busy, not down, and failing the check would take every full replica out at once.
    if (server.pendingRequests > caps.maxConnections && !isHealthCheck(req.url)) {
      capped++;
      return Response.json(
        { error: `Service unavailable: ${caps.maxConnections} requests are in flight on this listener (--max-connections); retry` },
        { status: 503, headers: { connection: "close", "retry-after": "1" } },
      );
    }
    let request = req;
    if (req.url.charCodeAt(0) !== 104 /* h */) {
      // Without a Host header (HTTP/1.0: HAProxy's health check) Bun gives the target alone, which
      // the app cannot route: name this listener, as the TLS transport names its own host.
      if (req.url.charCodeAt(0) !== 47 /* / */) return Response.json({ error: "Bad request: no Host header" }, { status: 400, headers: { connection: "close" } });
      request = new Request(`http://${hostName}${req.url}`, req);
    }
    const env: Bindings = {};
    if (remoteAddr) env.remoteAddr = remoteAddr;
    const forwarded = req.headers.get(certHeader);
    if (forwarded !== null) {
      const peer = await opts.forwardedCerts.verify(forwarded);
      if (peer) env.peer = peer;
    } else opts.forwardedCerts.noticeAbsent(certHeader, (name) => req.headers.get(name));
    // As the TLS transport: only a request without a body may be held (GET /repo/wait).
    const bodyless = req.method === "GET" || req.method === "HEAD";
    const conn = bodyless ? new ProxiedRequest(req, remoteAddr, caps) : undefined;
    if (conn) env.connection = conn;
    // The admission hook only matters for a request with a body, which it may refuse unread: without
    // one the app gets the same request either way, and the deadlines an authenticated client
    // earns on the TLS port are the proxy's business here.
    let refuse = false;
    if (!bodyless && opts.admit) {
      let admission: Admission;
      try {
        admission = await opts.admit(requestInfo(request), env);
      } catch (err) {
        console.error("gateway: admission failed:", err);
        admission = { authenticated: false };
      }
      // Refused whatever its body: the app answers from the head alone, the body is never read,
      // and the connection closes after the answer (what is left of the body is not a request).
      if (admission.refuse && req.body !== null) {
        refuse = true;
        request = new Request(request.url, { method: req.method, headers: req.headers });
      }
    }
    try {
      const res = await opts.fetch(request, env);
      return refuse ? closing(res) : res;
    } catch (err) {
      console.error("gateway: unhandled error:", err);
      return Response.json({ error: "Internal error" }, { status: 500 });
    } finally {
      conn?.done();
    }
  };

  const common = {
    idleTimeout,
    // Registry uploads pass through whole: the app and the registry set their own limits.
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    fetch: handle,
    error(err: Error) {
      console.error("gateway: unhandled error:", err);
      return Response.json({ error: "Internal error" }, { status: 500 });
    },
  };
  const address = opts.address;
  // Bun's types leave idleTimeout out for unix sockets, but Bun applies it there too (a held
  // request is cut after it, as over TCP): the cast keeps it.
  const serve = () => {
    if (!("unix" in address)) return Bun.serve({ ...common, hostname: address.host, port: address.port });
    // The socket is fully trusted: bind it with others shut out (umask 0117, so never wider than
    // 0660 even for a moment), then give it exactly the mode asked for.
    const umask = process.umask(0o117);
    try {
      return Bun.serve({ ...common, unix: address.unix } as unknown as Parameters<typeof Bun.serve>[0]);
    } finally {
      process.umask(umask);
    }
  };
  let server: Server<undefined>;
  const where = "unix" in address ? address.unix : `${urlHost(address.host)}:${address.port}`;
  try {
    server = serve();
  } catch (err) {
    // A socket file left by a gateway that did not stop cleanly: take it over if nobody answers on it.
    if (!("unix" in address) || (err as { code?: string }).code !== "EADDRINUSE") throw listenError(err, where);
    const isSocket = await lstat(address.unix).then((st) => st.isSocket(), () => false);
    if (!isSocket || (await socketAnswers(address.unix))) throw listenError(err, where);
    await unlink(address.unix);
    server = serve();
  }
  if ("unix" in address) {
    const mode = opts.socketMode ?? DEFAULT_SOCKET_MODE;
    try {
      await chmod(address.unix, mode);
    } catch (err) {
      // Without the chmod the umask decided: a socket anyone may write to lets anyone be any device.
      const st = await stat(address.unix).catch(() => undefined);
      if (!st || (st.mode & 0o002 && !(mode & 0o002))) {
        void server.stop(true);
        throw new InvalidProxyListenError(`Cannot set mode ${mode.toString(8)} on ${address.unix} (${(err as Error).message}) and it is world-writable: refusing to serve on it`);
      }
    }
  }
  const url = "unix" in address ? `unix:${address.unix}` : `http://${urlHost(server.hostname!)}:${server.port}`;
  return {
    url,
    stats: () => ({ busy: server.pendingRequests, capped, held: caps.held, holdsRefused: caps.holdsRefused }),
    close: async (graceMs = 10_000) => {
      const t = setTimeout(() => void server.stop(true), graceMs);
      await server.stop(false);
      clearTimeout(t);
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

function requestInfo(req: Request): RequestInfo {
  return {
    method: req.method,
    path: urlTarget(req.url).path,
    header: (name) => req.headers.get(name) ?? undefined,
  };
}
