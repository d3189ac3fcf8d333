/**
 * The transport: `Bun.listen` terminates TLS (client certificates requested,
 * not required, verified against the device CA) and a small HTTP/1.1 server
 * (gateway/transport/http1.ts) turns each request into a web `Request` for
 * the Hono app. The verified peer certificate (or, from a trusted proxy, the
 * forwarded one) is passed as `env.peer`.
 *
 * Why not node:http over node:tls: Bun.serve cannot tell the handler the peer
 * certificate (SPEC §3), and node:http over node:tls sockets ran at a quarter
 * of Bun.serve (two TLS writes per answer) and buffered whole uploads in
 * memory (no backpressure). Here an answer with a small body is one write,
 * and a request body is a stream that pauses the socket when the handler
 * falls behind, so memory stays flat whatever the upload size.
 *
 * @module
 */
import type { Socket, TCPSocketListener } from "bun";
import type { Bindings, PeerIdentity } from "./env.ts";
import type { ForwardedCertVerifier } from "./pki/forwarded-cert.ts";
import { normalizeSerial } from "./pki/keys.ts";
import { BadRequestError, BodyDecoder, MAX_HEAD_BYTES, parseHead, type RequestHead, statusLine } from "./transport/http1.ts";
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

/** Bodies up to this declared length are read whole before the handler runs (check-ins); larger ones stream. */
const SMALL_BODY = 64 * 1024;
/** Request-body bytes gathered for a busy handler above which the socket stops reading. */
const BODY_HIGH_WATER = 1024 * 1024;
const IDLE_SECONDS = 75;
const CRLFCRLF = Buffer.from("\r\n\r\n");
const CONTINUE = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n");
const EMPTY = new Uint8Array(0);

/** One TLS connection and the request on it (requests on a connection are handled one at a time). */
interface Conn {
  sock: Socket<Conn>;
  /** Received bytes not parsed yet (the next request's head). */
  buf?: Buffer;
  /** A request is being handled; further bytes wait in `buf`. */
  busy: boolean;
  /** The current request's body, until complete. */
  body?: BodyDecoder;
  bodyDone?: () => void;
  bodyFailed?: (err: Error) => void;
  /** Bytes the socket did not take yet, in order. */
  out: Uint8Array[];
  /** Resolved when `out` is empty or the connection is gone. */
  flushed: (() => void)[];
  paused: boolean;
  /** The last answer is out (or going): read and drop whatever else arrives, then close. */
  ending: boolean;
  closed: boolean;
  /** Called when the connection goes away mid-request. */
  onClose?: () => void;
  peer?: PeerIdentity | null;
  remoteAddr: string;
}

class ClientGoneError extends Error {
  override name = "ClientGoneError";
  constructor() {
    super("Client aborted the request: the connection closed before the body was complete");
  }
}

/** The device identity of a connection whose chain verified; computed once per connection. */
function socketPeer(c: Conn): PeerIdentity | undefined {
  if (c.peer === undefined) {
    c.peer = null;
    if (c.sock.authorized) {
      const cert = c.sock.getPeerCertificate();
      const cn = cert?.subject?.CN;
      if (cert?.serialNumber && typeof cn === "string") c.peer = { cn, serial: normalizeSerial(cert.serialNumber) };
    }
  }
  return c.peer ?? undefined;
}

function send(c: Conn, data: Uint8Array): void {
  if (c.closed || data.byteLength === 0) return;
  if (c.out.length) {
    c.out.push(data);
    return;
  }
  const n = c.sock.write(data);
  if (n < data.byteLength) c.out.push(data.subarray(Math.max(0, n)));
}

function flush(c: Conn): void {
  while (c.out.length && !c.closed) {
    const head = c.out[0]!;
    const n = c.sock.write(head);
    if (n < head.byteLength) {
      c.out[0] = head.subarray(Math.max(0, n));
      return;
    }
    c.out.shift();
  }
  const waiters = c.flushed.splice(0);
  for (const w of waiters) w();
}

function whenFlushed(c: Conn): Promise<void> {
  if (!c.out.length || c.closed) return Promise.resolve();
  return new Promise((resolve) => c.flushed.push(resolve));
}

function pause(c: Conn): void {
  if (!c.paused && !c.closed) {
    c.paused = true;
    c.sock.pause();
  }
}

function resume(c: Conn): void {
  if (c.paused && !c.closed) {
    c.paused = false;
    c.sock.resume();
  }
}

let dateSecond = 0;
let dateLine = "";
function httpDate(): string {
  const s = Math.floor(Date.now() / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateLine = `date: ${new Date(s * 1000).toUTCString()}\r\n`;
  }
  return dateLine;
}

/** Closes the connection once what is queued is sent; anything still arriving is dropped. */
function endConnection(c: Conn): void {
  c.ending = true;
  resume(c);
  c.sock.timeout(10); // a client that never closes its side is cut off
  void whenFlushed(c).then(() => c.sock.end());
}

/** A short error answer written by the transport itself, closing the connection. */
function reject(c: Conn, status: number, message: string): void {
  const body = Buffer.from(JSON.stringify({ error: message }));
  send(c, Buffer.from(`${statusLine(status)}content-type: application/json\r\ncontent-length: ${body.byteLength}\r\nconnection: close\r\n${httpDate()}\r\n`, "latin1"));
  send(c, body);
  c.busy = true;
  endConnection(c);
}

function concat(a: Uint8Array, b: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

export function listen(opts: TransportOptions): Promise<Listening> {
  const headerName = (opts.clientCertHeader ?? "x-client-cert").toLowerCase();
  const conns = new Set<Conn>();
  let stopping = false;
  let allClosed: (() => void) | undefined;

  /** Parses the next request head in `c.buf`, if complete, and starts handling it. */
  const next = (c: Conn) => {
    let buf = c.buf;
    if (!buf || c.busy || c.closed) return;
    let start = 0;
    while (start + 1 < buf.byteLength && buf[start] === 13 && buf[start + 1] === 10) start += 2; // stray CRLFs between requests
    if (start) buf = c.buf = buf.subarray(start);
    const end = buf.indexOf(CRLFCRLF);
    if (end < 0) {
      if (buf.byteLength > MAX_HEAD_BYTES) reject(c, 431, "Request header too large");
      return;
    }
    let head: RequestHead;
    try {
      if (end > MAX_HEAD_BYTES) throw new BadRequestError("Request header too large", 431);
      head = parseHead(buf.toString("latin1", 0, end));
    } catch (err) {
      const e = err instanceof BadRequestError ? err : new BadRequestError(String(err));
      reject(c, e.status, e.message);
      return;
    }
    const rest = end + 4 < buf.byteLength ? Buffer.from(buf.subarray(end + 4)) : EMPTY;
    c.buf = undefined;
    c.busy = true;
    void handle(c, head, rest).catch((err) => {
      console.error("gateway: transport error:", err);
      c.sock.terminate();
    });
  };

  /** Sets up the body of `head` (fed by the socket's data events) and returns it as the Request wants it. */
  const startBody = (c: Conn, head: RequestHead, rest: Uint8Array, wanted: boolean): Promise<Uint8Array | ReadableStream<Uint8Array> | undefined> | Uint8Array | ReadableStream<Uint8Array> | undefined => {
    const hasBody = head.chunked || (head.contentLength ?? 0) > 0;
    if (!hasBody) {
      if (rest.byteLength) c.buf = Buffer.from(rest);
      return wanted ? EMPTY : undefined;
    }
    if (head.expectContinue) send(c, CONTINUE);
    const feedFirst = (decoder: BodyDecoder) => {
      c.body = decoder;
      const after = decoder.feed(rest);
      if (after?.byteLength) c.buf = Buffer.from(after);
      if (decoder.done) c.bodyDone?.();
    };
    if (!wanted) {
      // A GET or HEAD with a body: skip it, keep the framing.
      feedFirst(new BodyDecoder(head, () => {}));
      return undefined;
    }
    if (!head.chunked && head.contentLength! <= SMALL_BODY) {
      // Check-in events, inventory: read in one go, far cheaper than a stream.
      const bytes = new Uint8Array(head.contentLength!);
      let off = 0;
      const decoder = new BodyDecoder(head, (chunk) => {
        bytes.set(chunk, off);
        off += chunk.byteLength;
      });
      feedFirst(decoder);
      if (decoder.done) return bytes; // usually it came with the head
      return new Promise<Uint8Array>((resolve, fail) => {
        c.bodyDone = () => resolve(bytes);
        c.bodyFailed = fail;
      });
    }
    // Bytes that arrive while the handler is busy (writing the last chunk to disk) are gathered
    // and handed over as one chunk at its next read: few large writes instead of one per TLS
    // record. Past BODY_HIGH_WATER the socket stops reading until the handler catches up.
    let ctrl!: ReadableStreamDefaultController<Uint8Array>;
    let cancelled = false;
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    let waiting = false;
    let ended = false;
    const deliver = () => {
      const chunk = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      waiting = false;
      ctrl.enqueue(chunk);
      if (ended) ctrl.close();
      else resume(c);
    };
    const stream = new ReadableStream<Uint8Array>(
      {
        start(k) {
          ctrl = k;
        },
        pull() {
          if (pendingBytes) deliver();
          else if (ended) ctrl.close();
          else {
            waiting = true;
            resume(c);
          }
        },
        cancel() {
          cancelled = true;
          pending = [];
          resume(c); // keep reading (and dropping) so the connection can answer and close
        },
      },
      { highWaterMark: 0 },
    );
    c.bodyDone = () => {
      ended = true;
      if (!cancelled && waiting) {
        if (pendingBytes) deliver();
        else ctrl.close();
      }
    };
    c.bodyFailed = (err) => {
      if (!cancelled) ctrl.error(err);
    };
    feedFirst(
      new BodyDecoder(head, (chunk) => {
        if (cancelled) return;
        pending.push(chunk.slice());
        pendingBytes += chunk.byteLength;
        if (waiting) deliver();
        else if (pendingBytes >= BODY_HIGH_WATER) pause(c);
      }),
    );
    return stream;
  };

  const handle = async (c: Conn, head: RequestHead, rest: Uint8Array) => {
    const method = head.method;
    const isHead = method === "HEAD";
    const bodyMethod = method !== "GET" && !isHead;
    let signal: AbortSignal | undefined;
    let finished = false;
    if (bodyMethod && (head.chunked || head.contentLength! > SMALL_BODY)) {
      // Uploads can be long: let handlers see a client that went away.
      const ac = new AbortController();
      c.onClose = () => {
        if (!finished) ac.abort(new ClientGoneError());
      };
      signal = ac.signal;
    }
    let request: Request;
    let peer = socketPeer(c);
    const remoteAddr = c.remoteAddr;
    try {
      // Synchronously, before any await: the body's bytes must go to its decoder from the next read on.
      const started = startBody(c, head, rest, bodyMethod);
      if (!peer && opts.forwardedCerts && opts.trustedProxies?.has(remoteAddr)) {
        const forwarded = head.headers.find(([k]) => k.toLowerCase() === headerName)?.[1];
        if (forwarded !== undefined) peer = await opts.forwardedCerts.verify(forwarded);
      }
      const body = started instanceof Promise ? await started : started;
      const url = head.target.charCodeAt(0) === 47 /* / */ ? `https://${head.host || opts.host}${head.target}` : head.target;
      request = new Request(url, (bodyMethod ? { method, headers: head.headers, body, duplex: "half", ...(signal ? { signal } : {}) } : { method, headers: head.headers }) as RequestInit);
    } catch (err) {
      // A malformed body, or a target or header the Request constructor refuses; or the client left.
      if (!c.closed) reject(c, err instanceof BadRequestError ? err.status : 400, `Bad request: ${(err as Error).message}`);
      return;
    }
    let response: Response;
    try {
      const env: Bindings = {};
      if (peer) env.peer = peer;
      if (remoteAddr) env.remoteAddr = remoteAddr;
      response = await opts.fetch(request, env);
    } catch (err) {
      if (c.closed) return;
      console.error("gateway: unhandled error:", err);
      response = Response.json({ error: "Internal error" }, { status: 500 });
    }
    const keepAlive = await writeResponse(c, response, head, isHead);
    finished = true;
    c.onClose = undefined;
    if (c.closed) return;
    if (!keepAlive) {
      endConnection(c);
      return;
    }
    c.busy = false;
    c.body = c.bodyDone = c.bodyFailed = undefined;
    resume(c);
    c.sock.timeout(IDLE_SECONDS); // Bun's socket timeout is not reset by traffic: re-arm it as the connection goes idle
    next(c);
  };

  /** Writes the answer; returns whether the connection can take another request. */
  const writeResponse = async (c: Conn, response: Response, req: RequestHead, isHead: boolean): Promise<boolean> => {
    const status = response.status;
    let head = statusLine(status);
    let length: string | undefined;
    response.headers.forEach((v, k) => {
      if (k === "content-length") length = v;
      else if (k !== "set-cookie" && k !== "transfer-encoding" && k !== "connection" && k !== "keep-alive") head += `${k}: ${v}\r\n`;
    });
    for (const cookie of response.headers.getSetCookie()) head += `set-cookie: ${cookie}\r\n`;
    head += httpDate();
    // Keep the connection only if this request's body was read to its end (else its rest would be taken for a request).
    const keepAlive = req.keepAlive && !stopping && (!c.body || c.body.done);
    if (!keepAlive) head += "connection: close\r\n";
    else if (req.minor === 0) head += "connection: keep-alive\r\n";
    const noBody = isHead || status === 204 || status === 304 || status < 200;
    if (noBody || !response.body) {
      if (length !== undefined && (isHead || status === 304)) head += `content-length: ${length}\r\n`;
      else if (!noBody) head += "content-length: 0\r\n";
      send(c, Buffer.from(head + "\r\n", "latin1"));
      await response.body?.cancel().catch(() => {});
      return keepAlive;
    }
    const reader = response.body.getReader();
    try {
      // Most answers are one small chunk: send them with a Content-Length, head and body in one write.
      const first = await reader.read();
      const second = first.done ? first : await reader.read();
      if (second.done) {
        const body = first.done ? EMPTY : first.value;
        head += `content-length: ${length ?? body.byteLength}\r\n\r\n`;
        const out = Buffer.allocUnsafe(head.length + body.byteLength);
        out.write(head, 0, "latin1");
        out.set(body, head.length);
        send(c, out);
        return keepAlive;
      }
      const chunked = length === undefined;
      head += chunked ? "transfer-encoding: chunked\r\n\r\n" : `content-length: ${length}\r\n\r\n`;
      send(c, Buffer.from(head, "latin1"));
      const write = (chunk: Uint8Array) => {
        if (!chunk.byteLength) return;
        send(c, chunked ? concat(concat(Buffer.from(`${chunk.byteLength.toString(16)}\r\n`), chunk), CRLF) : chunk);
      };
      write(first.value!);
      let chunk: Awaited<ReturnType<typeof reader.read>> = second;
      while (!chunk.done) {
        write(chunk.value);
        await whenFlushed(c);
        if (c.closed) {
          await reader.cancel().catch(() => {});
          return false;
        }
        chunk = await reader.read();
      }
      if (chunked) send(c, LAST_CHUNK);
      return keepAlive;
    } catch (err) {
      // The body failed midway: the client sees a cut answer, not a wrong one.
      console.error("gateway: response body failed:", err);
      await reader.cancel().catch(() => {});
      c.sock.terminate();
      return false;
    }
  };

  return new Promise((resolve, reject_) => {
    let listener: TCPSocketListener<Conn>;
    try {
      listener = Bun.listen<Conn>({
        hostname: opts.host,
        port: opts.port,
        tls: { cert: opts.cert, key: opts.key, ca: opts.clientCa, requestCert: true, rejectUnauthorized: false },
        socket: {
          open(sock) {
            const c: Conn = { sock, busy: false, out: [], flushed: [], paused: false, ending: false, closed: false, remoteAddr: sock.remoteAddress };
            sock.data = c;
            conns.add(c);
            sock.timeout(IDLE_SECONDS);
          },
          data(sock, data) {
            const c = sock.data;
            if (!c || c.closed || c.ending) return;
            let rest: Uint8Array | undefined = data;
            if (c.body && !c.body.done) {
              try {
                rest = c.body.feed(data);
              } catch (err) {
                c.bodyFailed?.(err as Error);
                reject(c, (err as BadRequestError).status ?? 400, (err as Error).message);
                return;
              }
              if (c.body.done) c.bodyDone?.();
              if (!rest?.byteLength) return;
            }
            if (!c.busy && !c.buf) {
              // The usual case: a whole request head in one read; parse it in place.
              c.buf = rest as Buffer;
              next(c);
              if (c.buf && !c.busy) c.buf = Buffer.from(c.buf); // an incomplete head waits for more, in its own copy
              return;
            }
            c.buf = c.buf ? concat(c.buf, rest) : Buffer.from(rest);
            if (!c.busy) next(c);
            else if (c.buf.byteLength > MAX_HEAD_BYTES) pause(c); // pipelined requests wait their turn
          },
          drain(sock) {
            if (sock.data) flush(sock.data);
          },
          timeout(sock) {
            // Idle keep-alive connections close; one with a request in progress (a long upload
            // or download) is left alone.
            const c = sock.data;
            if (!c || c.ending) sock.terminate();
            else if (!c.busy) sock.end();
            else sock.timeout(IDLE_SECONDS);
          },
          close(sock) {
            const c = sock.data;
            if (!c) return;
            c.closed = true;
            conns.delete(c);
            c.onClose?.();
            if (c.body && !c.body.done) c.bodyFailed?.(new ClientGoneError());
            for (const w of c.flushed.splice(0)) w();
            if (conns.size === 0) allClosed?.();
          },
          error() {
            // a failed handshake or reset is the client's problem, not a crash; close follows
          },
        },
      });
    } catch (err) {
      reject_(err);
      return;
    }
    const host = listener.hostname.includes(":") ? `[${listener.hostname}]` : listener.hostname;
    resolve({
      host: listener.hostname,
      port: listener.port,
      url: `https://${host}:${listener.port}`,
      close: (graceMs = 10_000) =>
        new Promise<void>((done) => {
          stopping = true;
          listener.stop(false);
          for (const c of conns) if (!c.busy) c.sock.end();
          if (conns.size === 0) return done();
          const t = setTimeout(() => {
            for (const c of conns) c.sock.terminate();
          }, graceMs);
          allClosed = () => {
            clearTimeout(t);
            done();
          };
        }),
    });
  });
}

const CRLF = Buffer.from("\r\n");
const LAST_CHUNK = Buffer.from("0\r\n\r\n");
