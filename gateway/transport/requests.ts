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
import { DEFAULT_CLIENT_CERT_HEADER, type Admission, type HeadAnswer, type HeadRequest, type RequestInfo, type TransportLimits, type TransportOptions } from "./options.ts";
import { hasBody, startBody, streamsBody } from "./request-body.ts";
import { writeHeadAnswer, writeResponse } from "./response-writer.ts";

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

const AUTHENTICATED: Admission = Object.freeze({ authenticated: true });
const NOT_AUTHENTICATED: Admission = Object.freeze({ authenticated: false });
const admissionFailed = (err: unknown): Admission => {
  console.error("gateway: admission failed:", err);
  return NOT_AUTHENTICATED;
};

/**
 * What the loop needs of the listener's options; `scheme` names the request URLs (default
 * https; the plain port's are http). `forwards`: whether a connection's forwarded certificate
 * header is believed; without it, whether its address is a trusted proxy's (the plain port,
 * whose clients are all proxies); the TLS port asks for a proxy certificate too (listen.ts), and
 * is told through `unbelieved` of a header it did not believe.
 */
export type LoopOptions = Pick<TransportOptions, "host" | "fetch"> & Partial<TransportOptions> & {
  scheme?: "http" | "https";
  forwards?(c: Connection): boolean;
  /** A request without a verified certificate on a connection whose header is not believed; `sent`: whether it carried the header. */
  unbelieved?(c: Connection, sent: () => boolean): void;
};

export class RequestLoop {
  readonly #opts: LoopOptions;
  readonly #origin: string;
  readonly #limits: TransportLimits;
  readonly #hooks: RequestLoopHooks;
  readonly #certHeader: string;

  constructor(opts: LoopOptions, limits: TransportLimits, hooks: RequestLoopHooks) {
    this.#opts = opts;
    this.#origin = `${opts.scheme ?? "https"}://`;
    this.#limits = limits;
    this.#hooks = hooks;
    this.#certHeader = (opts.clientCertHeader ?? DEFAULT_CLIENT_CERT_HEADER).toLowerCase();
  }

  /** Arms the deadline for the next request head (on a new or a kept-alive connection), which may now be closed as idle. */
  awaitHead(c: Connection): void {
    c.arm("head", c.authenticated ? this.#limits.idleTimeoutMs : this.#limits.headTimeoutMs);
    c.waiting();
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
      if (c.idle) c.caps?.active(c); // a request starts: the caps no longer close it as idle
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

  /**
   * The app's verdict, without a promise when the hook answers at once (a cached device's check-in);
   * if the hook fails (its store is down), the request goes on unauthenticated and the app answers it.
   */
  #admit(head: RequestHead, env: Bindings, c: Connection): Admission | Promise<Admission> {
    if (!this.#opts.admit) return c.authenticated ? AUTHENTICATED : NOT_AUTHENTICATED;
    try {
      const verdict = this.#opts.admit(requestInfo(head), env);
      return verdict instanceof Promise ? verdict.catch(admissionFailed) : verdict;
    } catch (err) {
      return admissionFailed(err);
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
    if (bodyMethod && streamsBody(head)) {
      // Uploads can be long: let handlers see a client that went away (until the answer is out: #answered clears it).
      const ac = new AbortController();
      c.onClose = () => ac.abort(new ClientGoneError());
      signal = ac.signal;
    }
    const env: Bindings = {};
    if (c.remoteAddr) env.remoteAddr = c.remoteAddr;
    if (!hasBody(head)) env.connection = c; // a held request (GET /repo/wait) learns when its client leaves: c.onClose
    let request: Request | undefined;
    let headAnswer: HeadAnswer | Response | Promise<HeadAnswer | Response> | undefined;
    try {
      // Until the body's decoder is set up below, bytes that arrive wait in c.buf (c.busy is set).
      let peer = c.peer ?? undefined;
      if (!peer && this.#opts.forwardedCerts) {
        if (this.#opts.forwards ? this.#opts.forwards(c) : this.#opts.trustedProxies?.has(c.remoteAddr)) {
          const headers = new HeaderList(head.headers);
          const forwarded = headers.get(this.#certHeader) ?? undefined;
          if (forwarded !== undefined) peer = await this.#opts.forwardedCerts.verify(forwarded);
          else this.#opts.forwardedCerts.noticeAbsent(this.#certHeader, (name) => headers.get(name));
        } else this.#opts.unbelieved?.(c, () => new HeaderList(head.headers).get(this.#certHeader) !== null);
      }
      if (peer) env.peer = peer;
      const admitted = this.#admit(head, env, c);
      const admission = admitted instanceof Promise ? await admitted : admitted;
      if (c.closed || c.ending) return;
      if (admission.authenticated && !c.authenticated) {
        c.authenticated = true;
        this.#hooks.authenticated(c);
        if (hasBody(head)) c.arm("stall", limits.idleTimeoutMs);
      }
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
        request = new Request(this.#url(head), { method, headers: head.headers });
      } else {
        if (c.buf) {
          rest = rest.byteLength ? concat(rest, c.buf) : c.buf;
          c.buf = undefined;
          c.resume();
        }
        const started = startBody(c, head, rest, bodyMethod);
        if (!c.body || c.body.done) c.disarm();
        const body = started instanceof Promise ? await started : started;
        // The app's head handler first, when the body is whole (not a stream) and the head is one a Request would take as is.
        const fetchHead = this.#opts.fetchHead;
        if (fetchHead && !(body instanceof ReadableStream) && takenAsIs(head)) {
          try {
            headAnswer = fetchHead(new ParsedRequest(head, body ?? EMPTY), env);
          } catch (err) {
            headAnswer = Promise.reject(err); // the handler's error, answered below as fetch's would be (500), not as a bad request
          }
        }
        if (headAnswer === undefined)
          request = new Request(this.#url(head), (bodyMethod ? { method, headers: head.headers, body, duplex: "half", ...(signal ? { signal } : {}) } : { method, headers: head.headers }) as RequestInit);
      }
    } catch (err) {
      // A malformed body, a target or header the Request constructor refuses, a deadline; or the client left.
      c.fail(err instanceof BadRequestError ? err.status : err instanceof RequestTimeoutError ? 408 : 400, `Bad request: ${(err as Error).message}`);
      return;
    }
    let response: HeadAnswer | Response;
    try {
      // What a held request (a long poll) keeps while it waits is this frame: drop the request
      // and the parsed header list (the Request has its own copy) before waiting for the answer.
      head.headers = NO_HEADERS;
      const answer = headAnswer ?? this.#opts.fetch(request!, env);
      request = headAnswer = undefined;
      response = answer instanceof Promise ? await answer : answer;
    } catch (err) {
      if (c.closed || c.ending) return;
      console.error("gateway: unhandled error:", err);
      response = Response.json({ error: "Internal error" }, { status: 500 });
    }
    return this.#answered(c, head, response);
  }

  /** The URL of the web Request: an origin-form target joined to the Host header (or the listen host). */
  #url(head: RequestHead): string {
    return head.target.charCodeAt(0) === 47 /* / */ ? `${this.#origin}${head.host || this.#opts.host}${head.target}` : head.target;
  }

  /** Writes the app's answer, then readies the connection for the next request (or ends it); no promise for a HeadAnswer. */
  #answered(c: Connection, head: RequestHead, answer: HeadAnswer | Response): void | Promise<void> {
    if (c.closed || c.ending) return answer instanceof Response ? answer.body?.cancel().catch(() => {}) : undefined;
    const limits = this.#limits;
    // The client must keep reading the answer: a stalled reader is cut.
    c.arm("stall", c.authenticated ? limits.idleTimeoutMs : limits.bodyTimeoutMs);
    // Keep the connection only if this request's body was read to its end (else its rest would be taken for a request).
    const reusable = !this.#hooks.stopping() && !c.bodyUnread && (!c.body || c.body.done);
    if (answer instanceof Response) return writeResponse(c, answer, head, reusable).then((keepAlive) => this.#after(c, keepAlive));
    this.#after(c, writeHeadAnswer(c, answer, head, reusable));
  }

  /** The answer is written (or queued): next request, or the end of the connection. */
  #after(c: Connection, keepAlive: boolean): void {
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

/**
 * Whether a web Request would take this head as is: an origin-form target (parseHead has checked
 * the target, the Host and the header names and values). An absolute URL goes the Request's way,
 * whose constructor refuses it (400) or normalises it as it always did.
 */
const takenAsIs = (head: RequestHead): boolean => head.target.charCodeAt(0) === 47; /* / */

/** A request head and its whole body as the app's head handler reads them (HeadRequest), with no web Request built. */
class ParsedRequest implements HeadRequest {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly headers: HeaderList;
  constructor(
    head: RequestHead,
    readonly body: Uint8Array,
  ) {
    this.method = head.method;
    const t = head.target;
    const q = t.indexOf("?");
    this.path = q < 0 ? t : t.slice(0, q);
    this.query = q < 0 ? "" : t.slice(q + 1);
    this.headers = new HeaderList(head.headers);
  }
}

/**
 * Header lookup over the parsed list as the Headers class answers it: any case, repeated values
 * joined by ", ". The one lookup of the transport (the admission hook's, the forwarded
 * certificate's, the head handler's), so each reads a repeated header as the app's Request does.
 */
class HeaderList {
  constructor(private readonly list: [string, string][]) {}
  get(name: string): string | null {
    const n = name.toLowerCase();
    let value: string | null = null;
    for (const [k, v] of this.list) if (k.length === n.length && k.toLowerCase() === n) value = value === null ? v : `${value}, ${v}`; // lower-casing only same-length names
    return value;
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
  const headers = new HeaderList(head.headers);
  return { method: head.method, path, header: (name: string) => headers.get(name) ?? undefined };
}
