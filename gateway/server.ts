/**
 * The transport: node:tls terminates TLS (client certificates requested, not
 * required, verified against the device CA), each socket goes to a node:http
 * server, and each request becomes a streaming web `Request` for the Hono
 * app. The verified peer certificate (or, from a trusted proxy, the forwarded
 * one) is passed as `env.peer`; bodies are never buffered whole.
 *
 * @module
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import type { Bindings, PeerIdentity } from "./env.ts";
import type { ForwardedCertVerifier } from "./pki/forwarded-cert.ts";
import { normalizeSerial } from "./pki/keys.ts";
import type { TrustedProxies } from "./trusted-proxies.ts";

export interface TransportOptions {
  host: string;
  port: number;
  cert: string;
  key: string;
  /** PEM of the CA that issued device certificates. */
  clientCa: string;
  fetch(request: Request, env: Bindings): Response | Promise<Response>;
  /** Proxy mode: addresses whose forwarded certificate header is honoured. */
  trustedProxies?: TrustedProxies;
  /** Default `x-client-cert`. */
  clientCertHeader?: string;
  forwardedCerts?: ForwardedCertVerifier;
}

export interface Listening {
  host: string;
  port: number;
  url: string;
  /** Stops accepting, lets in-flight requests finish (up to `graceMs`), then closes every connection. */
  close(graceMs?: number): Promise<void>;
}

const NO_PEER = Symbol("no peer");
const peerOf = new WeakMap<object, PeerIdentity | typeof NO_PEER>();

/** The device identity of a TLS socket whose chain verified; computed once per connection. */
function socketPeer(sock: TLSSocket): PeerIdentity | undefined {
  let p = peerOf.get(sock);
  if (p === undefined) {
    p = NO_PEER;
    if (sock.authorized) {
      const cert = sock.getPeerCertificate();
      const cn = cert?.subject?.CN;
      if (cert?.serialNumber && typeof cn === "string") p = { cn, serial: normalizeSerial(cert.serialNumber) };
    }
    peerOf.set(sock, p);
  }
  return p === NO_PEER ? undefined : p;
}

const SMALL_BODY = 64 * 1024;

/** Reads a body of at most `declared` bytes (more is cut off: the length is the client's promise). */
function readSmall(req: IncomingMessage, declared: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const buf = Buffer.allocUnsafe(declared);
    let off = 0;
    req.on("data", (chunk: Buffer) => {
      const n = Math.min(chunk.byteLength, declared - off);
      chunk.copy(buf, off, 0, n);
      off += n;
    });
    req.once("end", () => resolve(buf.subarray(0, off)));
    req.once("error", reject);
  });
}

function toWebStream(req: IncomingMessage): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      start(ctrl) {
        req.on("data", (chunk: Buffer) => {
          ctrl.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          if ((ctrl.desiredSize ?? 1) <= 0) req.pause();
        });
        req.once("end", () => ctrl.close());
        req.once("error", (e) => ctrl.error(e));
        req.once("aborted", () => ctrl.error(new Error("Client aborted the request")));
      },
      pull() {
        req.resume();
      },
      cancel() {
        req.destroy();
      },
    },
    { highWaterMark: 256 * 1024, size: (c) => c?.byteLength ?? 0 },
  );
}

/** Resolves when the response can take more data (or the connection is gone). */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done).off("close", done);
      resolve();
    };
    res.on("drain", done).on("close", done);
  });
}

async function writeResponse(res: ServerResponse, response: Response, head: boolean): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((v, k) => {
    if (k !== "set-cookie") headers[k] = v;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length) headers["set-cookie"] = cookies;
  if (!response.body || head) {
    res.writeHead(response.status, headers);
    res.end();
    await response.body?.cancel().catch(() => {});
    return;
  }
  const reader = response.body.getReader();
  // Most answers are one small chunk: send them with a Content-Length in one write, not chunked.
  const first = await reader.read();
  const second = first.done ? first : await reader.read();
  if (second.done) {
    const body = first.done ? undefined : first.value;
    if (!("content-length" in headers)) headers["content-length"] = String(body?.byteLength ?? 0);
    res.writeHead(response.status, headers);
    res.end(body);
    return;
  }
  res.writeHead(response.status, headers);
  const onClose = () => void reader.cancel().catch(() => {});
  res.once("close", onClose);
  try {
    res.write(first.value);
    let chunk: { done: boolean; value?: Uint8Array } = second;
    while (!chunk.done) {
      if (!res.write(chunk.value!)) await drained(res);
      if (res.destroyed) break;
      chunk = await reader.read();
    }
    res.end();
  } catch {
    res.destroy();
  } finally {
    res.off("close", onClose);
  }
}

export function listen(opts: TransportOptions): Promise<Listening> {
  const headerName = (opts.clientCertHeader ?? "x-client-cert").toLowerCase();
  const sockets = new Set<TLSSocket>();

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const sock = req.socket as TLSSocket;
    const remoteAddr = sock.remoteAddress;
    let peer = socketPeer(sock);
    const forwarded = req.headers[headerName];
    if (!peer && typeof forwarded === "string" && opts.forwardedCerts && opts.trustedProxies?.has(remoteAddr))
      peer = await opts.forwardedCerts.verify(forwarded);
    const method = req.method ?? "GET";
    const headers = new Headers();
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
    const hasBody = method !== "GET" && method !== "HEAD";
    let signal: AbortSignal | undefined;
    if (hasBody) {
      // Uploads can be long: let handlers see a client that went away. (A GET's streamed
      // answer is cancelled by writeResponse instead, which keeps check-ins cheap.)
      const ac = new AbortController();
      res.once("close", () => {
        if (!res.writableFinished) ac.abort();
      });
      signal = ac.signal;
    }
    // Small bodies with a declared length (check-in events, inventory) are read in one go:
    // far cheaper than a stream. Anything else, uploads above all, streams.
    const declared = hasBody ? Number(req.headers["content-length"]) : NaN;
    const body = !hasBody ? undefined : declared >= 0 && declared <= SMALL_BODY ? await readSmall(req, declared) : toWebStream(req);
    const request = new Request(`https://${req.headers.host ?? opts.host}${req.url ?? "/"}`, {
      method,
      headers,
      ...(signal ? { signal, body, duplex: "half" } : {}),
    } as RequestInit);
    let response: Response;
    try {
      response = await opts.fetch(request, { ...(peer ? { peer } : {}), ...(remoteAddr ? { remoteAddr } : {}) });
    } catch (err) {
      console.error("gateway: unhandled error:", err);
      response = Response.json({ error: "Internal error" }, { status: 500 });
    }
    await writeResponse(res, response, method === "HEAD");
  };

  const http = createHttpServer((req, res) => void handle(req, res));
  http.keepAliveTimeout = 75_000;
  http.headersTimeout = 60_000;
  http.requestTimeout = 0; // registry uploads may take long; idle sockets still time out
  const tls = createTlsServer(
    { requestCert: true, rejectUnauthorized: false, ca: opts.clientCa, cert: opts.cert, key: opts.key },
    (sock) => {
      sockets.add(sock);
      sock.once("close", () => sockets.delete(sock));
      http.emit("connection", sock);
    },
  );
  tls.on("tlsClientError", () => {}); // a failed handshake is the client's problem, not a crash

  return new Promise((resolve, reject) => {
    tls.once("error", reject);
    tls.listen(opts.port, opts.host, () => {
      tls.off("error", reject);
      const addr = tls.address() as AddressInfo;
      const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
      resolve({
        host: addr.address,
        port: addr.port,
        url: `https://${host}:${addr.port}`,
        close: (graceMs = 10_000) =>
          new Promise<void>((done) => {
            tls.close(() => done());
            http.closeIdleConnections();
            for (const s of sockets) if (!(s as unknown as { _httpMessage?: unknown })._httpMessage) s.end();
            const t = setTimeout(() => {
              for (const s of sockets) s.destroy();
            }, graceMs);
            t.unref();
            if (sockets.size === 0) clearTimeout(t);
          }),
      });
    });
  });
}
