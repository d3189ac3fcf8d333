/**
 * HTTP/1.1 requests over one new TLS connection that can resume an earlier
 * TLS session: `node:tls` with `session`, the one client API in Bun that takes
 * a session from outside the process's own cache (Bun's fetch resumes too, but
 * only from its in-process cache, keyed by the TLS options). A device that
 * keeps the session it was given can skip the full handshake (certificate
 * exchange and signatures) on its next connection, even from a new process.
 *
 * A TLS session is a credential: whoever holds it is the device whose
 * certificate the full handshake verified, whatever certificate it offers
 * when resuming. Keep it where the device key is kept.
 *
 * @module
 */
import { connect, type TLSSocket } from "node:tls";

export class TlsExchangeError extends Error {
  override name = "TlsExchangeError";
}

export interface TlsClientIdentity {
  /** PEM of the only CA trusted for the server. */
  ca: string;
  /** The client certificate and key (PEM). */
  cert: string;
  key: string;
}

/** One request of an exchange: method, path, headers and an optional body. */
export interface RawRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface RawResponse {
  status: number;
  body: string;
}

export interface Exchange {
  responses: RawResponse[];
  /** The server accepted the offered session: no certificate was exchanged. */
  resumed: boolean;
  /** The newest session the server gave (offer it next time), or the one offered if none came. */
  session: Buffer | undefined;
  /** TLS version negotiated. */
  version: string | null;
}

const HEAD_END = Buffer.from("\r\n\r\n");

/** The first complete answer in `buf`: its length (head and body), status and body offset; undefined while incomplete. */
function answerLength(buf: Buffer): { length: number; status: number; bodyStart: number } | undefined {
  const end = buf.indexOf(HEAD_END);
  if (end < 0) return undefined;
  const head = buf.toString("latin1", 0, end).toLowerCase();
  const status = Number(head.slice(9, 12));
  const m = /\r\ncontent-length: *(\d+)/.exec(head);
  if (m) {
    const length = end + 4 + Number(m[1]);
    return buf.byteLength >= length ? { length, status, bodyStart: end + 4 } : undefined;
  }
  if (head.includes("transfer-encoding: chunked")) {
    const last = buf.indexOf("\r\n0\r\n\r\n", end);
    return last < 0 ? undefined : { length: last + 7, status, bodyStart: end + 4 };
  }
  return { length: end + 4, status, bodyStart: end + 4 };
}

/**
 * Opens one TLS connection to `host:port` as `id` (offering `session` when
 * given), sends `requests` one after the other on it (the last one with
 * `connection: close`), and returns the answers, whether the session was
 * resumed, and the session to offer next time. Chunked bodies are returned
 * as received (not decoded).
 *
 * @example
 * ```ts
 * const first = await exchange("127.0.0.1", 8443, id, [{ method: "GET", path: "/device" }]);
 * const again = await exchange("127.0.0.1", 8443, id, [{ method: "GET", path: "/device" }], { session: first.session });
 * again.resumed; // true while the server still accepts the ticket
 * ```
 * @throws {TlsExchangeError} If the connection fails or closes before every answer came, or `timeoutMs` passes.
 */
export function exchange(
  host: string,
  port: number,
  id: TlsClientIdentity,
  requests: RawRequest[],
  opts: { session?: Buffer; timeoutMs?: number } = {},
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    let session = opts.session;
    let buf: Buffer | undefined;
    const responses: RawResponse[] = [];
    let done = false;
    let resumed = false;
    let sock: TLSSocket;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        sock.destroy();
        reject(err);
        return;
      }
      resolve({ responses, resumed, session, version });
    };
    const timer = setTimeout(() => finish(new TlsExchangeError(`No answer from ${host}:${port} within ${opts.timeoutMs ?? 20_000} ms`)), opts.timeoutMs ?? 20_000);
    const send = (i: number) => {
      const r = requests[i]!;
      const last = i === requests.length - 1;
      const headers: Record<string, string> = { host: `${host}:${port}`, connection: last ? "close" : "keep-alive", ...r.headers };
      if (r.body !== undefined) headers["content-length"] = String(Buffer.byteLength(r.body));
      const head = `${r.method} ${r.path} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("")}\r\n`;
      sock.write(r.body !== undefined ? head + r.body : head);
    };
    let version: string | null = null;
    sock = connect({ host, port, ca: id.ca, cert: id.cert, key: id.key, session: opts.session }, () => {
      // Read now: after close a socket no longer reports its session.
      resumed = sock.isSessionReused();
      version = sock.getProtocol();
      send(0);
    });
    sock.on("session", (s: Buffer) => (session = s));
    sock.on("data", (d: Buffer) => {
      let b: Buffer | undefined = buf ? Buffer.concat([buf, d]) : d;
      for (let a = answerLength(b); b && a; a = b ? answerLength(b) : undefined) {
        responses.push({ status: a.status, body: b.toString("utf8", a.bodyStart, a.length) });
        b = b.byteLength > a.length ? b.subarray(a.length) : undefined;
        if (responses.length < requests.length) send(responses.length);
      }
      buf = b;
      // The server closes after the last answer; the newest ticket may still be on its way, so wait for close.
    });
    sock.on("error", (e) => finish(new TlsExchangeError(`TLS exchange with ${host}:${port} failed: ${e.message}`, { cause: e })));
    sock.on("close", () =>
      responses.length === requests.length
        ? finish()
        : finish(new TlsExchangeError(`Connection to ${host}:${port} closed after ${responses.length} of ${requests.length} answers`)),
    );
  });
}
