/**
 * The request loop of a connection: parse the next head from the bytes read,
 * ask the app's admission hook (before any of the body is read), set up the
 * body, call the app, write its answer, and arm the deadline for what the
 * client owes next. Requests on one connection are handled one at a time;
 * pipelined ones wait in the buffer.
 *
 * @module
 */
import type { Bindings } from "../env.ts";
import type { Connection } from "./connection.ts";
import { BadRequestError, MAX_HEAD_BYTES, parseHead, type RequestHead } from "./http1.ts";
import type { Admission, RequestInfo, TransportLimits, TransportOptions } from "./options.ts";
import { hasBody, startBody, streamsBody } from "./request-body.ts";
import { writeResponse } from "./response-writer.ts";

const CRLFCRLF = Buffer.from("\r\n\r\n");
const EMPTY = new Uint8Array(0);
const NO_HEADERS: [string, string][] = [];

export class ClientGoneError extends Error {
  override name = "ClientGoneError";
  constructor() {
    super("Client aborted the request: the connection closed before the body was complete");
  }
}

/** A deadline of the transport passed: the request is answered 408 and the connection closes. */
export class RequestTimeoutError extends Error {
  override name = "RequestTimeoutError";
}

export interface RequestLoopHooks {
  /** The server is stopping: answer, then close. */
  stopping(): boolean;
  /** The admission hook said this connection's client is authenticated. */
  authenticated(c: Connection): void;
}

const concat = (a: Uint8Array, b: Uint8Array): Buffer => Buffer.concat([a, b]);

export class RequestLoop {
  readonly #opts: TransportOptions;
  readonly #limits: TransportLimits;
  readonly #hooks: RequestLoopHooks;
  readonly #certHeader: string;

  constructor(opts: TransportOptions, limits: TransportLimits, hooks: RequestLoopHooks) {
    this.#opts = opts;
    this.#limits = limits;
    this.#hooks = hooks;
    this.#certHeader = (opts.clientCertHeader ?? "x-client-cert").toLowerCase();
  }

  /** Arms the deadline for the next request head (on a new or a kept-alive connection). */
  awaitHead(c: Connection): void {
    c.arm("head", c.authenticated ? this.#limits.idleTimeoutMs : this.#limits.headTimeoutMs);
  }

  /** Bytes read from the socket: the current body's, then the next heads'. */
  onData(c: Connection, data: Buffer): void {
    if (c.closed || c.ending) return;
    c.progress();
    let rest: Uint8Array | undefined = data;
    if (c.body && !c.body.done) {
      try {
        rest = c.body.feed(data);
      } catch (err) {
        c.bodyFailed?.(err as Error);
        c.fail((err as BadRequestError).status ?? 400, (err as Error).message);
        return;
      }
      if (c.body.done) this.#bodyComplete(c);
      if (!rest?.byteLength) return;
    }
    if (!c.busy && !c.buf) {
      // The usual case: a whole request head in one read; parse it in place.
      c.buf = rest as Buffer;
      this.next(c);
      if (c.buf && !c.busy) c.buf = Buffer.from(c.buf); // an incomplete head waits for more, in its own copy
      return;
    }
    c.buf = c.buf ? concat(c.buf, rest) : Buffer.from(rest);
    if (!c.busy) this.next(c);
    else if (c.buf.byteLength > MAX_HEAD_BYTES) c.pause(); // pipelined requests (or a body the admission holds back) wait their turn
  }

  /** Parses the next request head in `c.buf`, if complete, and starts handling it. */
  next(c: Connection): void {
    let buf = c.buf;
    if (!buf || c.busy || c.closed || c.ending) return;
    let start = 0;
    while (start + 1 < buf.byteLength && buf[start] === 13 && buf[start + 1] === 10) start += 2; // stray CRLFs between requests
    if (start) buf = c.buf = buf.subarray(start);
    const end = buf.indexOf(CRLFCRLF);
    if (end < 0) {
      if (buf.byteLength > MAX_HEAD_BYTES) c.fail(431, "Request header too large");
      return;
    }
    let head: RequestHead;
    try {
      if (end > MAX_HEAD_BYTES) throw new BadRequestError("Request header too large", 431);
      head = parseHead(buf.toString("latin1", 0, end));
    } catch (err) {
      const e = err instanceof BadRequestError ? err : new BadRequestError(String(err));
      c.fail(e.status, e.message);
      return;
    }
    const rest = end + 4 < buf.byteLength ? Buffer.from(buf.subarray(end + 4)) : EMPTY;
    c.buf = undefined;
    c.busy = true;
    void this.#handle(c, head, rest).catch((err) => {
      console.error("gateway: transport error:", err);
      c.sock.terminate();
    });
  }

  #bodyComplete(c: Connection): void {
    c.bodyDone?.();
    if (!c.responding) c.disarm(); // the client delivered; the time the handler takes is ours
  }

  /** The app's verdict; if the hook fails (its store is down), the request goes on unauthenticated and the app answers it. */
  async #admit(head: RequestHead, env: Bindings, c: Connection): Promise<Admission> {
    if (!this.#opts.admit) return { authenticated: c.authenticated };
    try {
      return await this.#opts.admit(requestInfo(head), env);
    } catch (err) {
      console.error("gateway: admission failed:", err);
      return { authenticated: false };
    }
  }

  async #handle(c: Connection, head: RequestHead, rest: Uint8Array): Promise<void> {
    const method = head.method;
    const bodyMethod = method !== "GET" && method !== "HEAD";
    const limits = this.#limits;
    // The client owes the body from now on (the admission below is quick, but it counts).
    if (hasBody(head)) c.arm(c.authenticated ? "stall" : "body", c.authenticated ? limits.idleTimeoutMs : limits.bodyTimeoutMs);
    else c.disarm();
    let signal: AbortSignal | undefined;
    let finished = false;
    if (bodyMethod && streamsBody(head)) {
      // Uploads can be long: let handlers see a client that went away.
      const ac = new AbortController();
      c.onClose = () => {
        if (!finished) ac.abort(new ClientGoneError());
      };
      signal = ac.signal;
    }
    const env: Bindings = {};
    if (c.remoteAddr) env.remoteAddr = c.remoteAddr;
    if (!hasBody(head)) env.connection = c; // a held request (GET /repo/wait) learns when its client leaves: c.onClose
    let request: Request | undefined;
    try {
      // Until the body's decoder is set up below, bytes that arrive wait in c.buf (c.busy is set).
      let peer = c.peer ?? undefined;
      if (!peer && this.#opts.forwardedCerts && this.#opts.trustedProxies?.has(c.remoteAddr)) {
        const forwarded = head.headers.find(([k]) => k.toLowerCase() === this.#certHeader)?.[1];
        if (forwarded !== undefined) peer = await this.#opts.forwardedCerts.verify(forwarded);
      }
      if (peer) env.peer = peer;
      const admission = await this.#admit(head, env, c);
      if (c.closed || c.ending) return;
      if (admission.authenticated && !c.authenticated) {
        c.authenticated = true;
        this.#hooks.authenticated(c);
        if (hasBody(head)) c.arm("stall", limits.idleTimeoutMs);
      }
      const url = head.target.charCodeAt(0) === 47 /* / */ ? `https://${head.host || this.#opts.host}${head.target}` : head.target;
      if (admission.refuse) {
        // Answered without its body, which is never read: the connection closes after the answer.
        c.bodyUnread = hasBody(head);
        if (!c.bodyUnread) {
          // No body: what came after the head is the next (pipelined) request.
          const more = c.buf;
          c.buf = undefined;
          const next = more ? (rest.byteLength ? concat(rest, more) : more) : rest;
          if (next.byteLength) c.buf = Buffer.from(next);
          c.disarm();
        }
        request = new Request(url, { method, headers: head.headers });
      } else {
        if (c.buf) {
          rest = rest.byteLength ? concat(rest, c.buf) : c.buf;
          c.buf = undefined;
          c.resume();
        }
        const started = startBody(c, head, rest, bodyMethod);
        if (!c.body || c.body.done) c.disarm();
        const body = started instanceof Promise ? await started : started;
        request = new Request(url, (bodyMethod ? { method, headers: head.headers, body, duplex: "half", ...(signal ? { signal } : {}) } : { method, headers: head.headers }) as RequestInit);
      }
    } catch (err) {
      // A malformed body, a target or header the Request constructor refuses, a deadline; or the client left.
      c.fail(err instanceof BadRequestError ? err.status : err instanceof RequestTimeoutError ? 408 : 400, `Bad request: ${(err as Error).message}`);
      return;
    }
    let response: Response;
    try {
      // What a held request (a long poll) keeps while it waits is this frame: drop the request
      // and the parsed header list (the Request has its own copy) before waiting for the answer.
      head.headers = NO_HEADERS;
      const answer = this.#opts.fetch(request, env);
      request = undefined;
      response = await answer;
    } catch (err) {
      if (c.closed || c.ending) return;
      console.error("gateway: unhandled error:", err);
      response = Response.json({ error: "Internal error" }, { status: 500 });
    }
    if (c.closed || c.ending) {
      await response.body?.cancel().catch(() => {});
      return;
    }
    // The client must keep reading the answer: a stalled reader is cut.
    c.arm("stall", c.authenticated ? limits.idleTimeoutMs : limits.bodyTimeoutMs);
    // Keep the connection only if this request's body was read to its end (else its rest would be taken for a request).
    const reusable = !this.#hooks.stopping() && !c.bodyUnread && (!c.body || c.body.done);
    const keepAlive = await writeResponse(c, response, head, reusable);
    finished = true;
    c.onClose = undefined;
    c.caps?.release(c);
    if (c.closed || c.ending) return;
    if (!keepAlive) {
      c.end();
      return;
    }
    c.busy = false;
    c.responding = false;
    c.bodyUnread = false;
    c.body = c.bodyDone = c.bodyFailed = undefined;
    c.resume();
    this.awaitHead(c);
    this.next(c);
  }
}

function requestInfo(head: RequestHead): RequestInfo {
  const q = head.target.indexOf("?");
  let path = q < 0 ? head.target : head.target.slice(0, q);
  if (path.charCodeAt(0) !== 47) {
    try {
      path = new URL(path).pathname; // absolute-form target
    } catch {
      path = "/";
    }
  }
  return {
    method: head.method,
    path,
    header(name: string) {
      const n = name.toLowerCase();
      for (const [k, v] of head.headers) if (k.length === n.length && k.toLowerCase() === n) return v; // lower-casing only same-length names
      return undefined;
    },
  };
}
