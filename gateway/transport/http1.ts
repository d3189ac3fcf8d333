/**
 * The HTTP/1.1 wire format the gateway's transport needs, and nothing more: a
 * request head parser and a chunked-body decoder. Parsing the bytes of a TLS
 * socket ourselves (instead of going through node:http) lets one check-in
 * answer go out in one TLS write and lets upload bodies apply backpressure to
 * the socket.
 *
 * @module
 */
import { requestTarget } from "./url.ts";

/** A request line and header block that cannot be parsed, or a body's bad framing; the connection answers 400 (or `status`) and closes. */
export class BadRequestError extends Error {
  override name = "BadRequestError";
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

export interface RequestHead {
  method: string;
  /** The request target: "/path?query" (or an absolute URL), as requestTarget (url.ts) has it read. */
  target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: number;
  /** Header name/value pairs in order, names as sent. */
  headers: [string, string][];
  host?: string;
  /** Declared body length; undefined with chunked encoding. */
  contentLength?: number;
  chunked: boolean;
  keepAlive: boolean;
  expectContinue: boolean;
}

export const MAX_HEAD_BYTES = 64 * 1024;
/** An HTTP token (a method, a header name). */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** What no line of a head holds: a CR or LF not in a CRLF (the head is split at CRLF), a NUL. */
const BARE_CR_LF_NUL = /[\0\r\n]/;
/** A Host the URL parser takes as is (not one that would move the path, "gw/admin"): a name or an IPv4 address, or a bracketed IPv6 one, and a port. */
const PLAIN_HOST = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::\d{0,5})?$/;

/**
 * Parses the head (without the final CRLF CRLF), latin1-decoded. The framing of the body is read
 * strictly (RFC 9112 §6), as a proxy in front of the gateway may read the same bytes otherwise,
 * and a request it takes for two could pass as one (request smuggling): Transfer-Encoding must be
 * exactly `chunked` (any other coding, 501), on HTTP/1.1 (on HTTP/1.0, 400) and without a
 * Content-Length (400); a line ends in CRLF only. A head that is refused closes the connection
 * after the answer, so nothing after it is read as a request.
 *
 * Header names are tokens, the Host is a host (and there is one), and the target is one the
 * whole gateway reads alike (requestTarget): the admission hook, the head handler and the web
 * Request take the head as is.
 */
export function parseHead(text: string): RequestHead {
  const lines = text.split("\r\n");
  const requestLine = lines[0]!;
  const sp1 = requestLine.indexOf(" ");
  const sp2 = requestLine.lastIndexOf(" ");
  if (sp1 <= 0 || sp2 <= sp1) throw new BadRequestError(`Bad request line: "${requestLine.slice(0, 100)}"`);
  const method = requestLine.slice(0, sp1);
  const sent = requestLine.slice(sp1 + 1, sp2);
  const version = requestLine.slice(sp2 + 1);
  if (!TOKEN.test(method) || sent.length === 0 || sent.includes(" ")) throw new BadRequestError(`Bad request line: "${requestLine.slice(0, 100)}"`);
  const target = requestTarget(sent);
  if (target === undefined)
    throw new BadRequestError(
      `Bad request target: "${sent.slice(0, 100)}" (a "." or ".." path segment, a backslash, a control, non-ASCII or "#" character, or a malformed %-escape)`,
    );
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") throw new BadRequestError(`Unsupported HTTP version: "${version.slice(0, 20)}"`, 505);
  const minor = version === "HTTP/1.1" ? 1 : 0;
  const headers: [string, string][] = [];
  let host: string | undefined;
  let contentLength: number | undefined;
  let chunked = false;
  let connection = "";
  let expectContinue = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new BadRequestError(`Bad header line: "${line.slice(0, 100)}"`);
    const name = line.slice(0, colon);
    if (!TOKEN.test(name) || BARE_CR_LF_NUL.test(line)) throw new BadRequestError(`Bad header line: "${line.slice(0, 100)}"`);
    const value = line.slice(colon + 1).trim();
    headers.push([name, value]);
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === "host") {
          if (host !== undefined || (value !== "" && !PLAIN_HOST.test(value))) throw new BadRequestError(`Bad Host: "${value.slice(0, 100)}"`);
          host = value;
        }
        break;
      case 6:
        if (name.toLowerCase() === "expect" && value.toLowerCase() === "100-continue") expectContinue = true;
        break;
      case 10:
        if (name.toLowerCase() === "connection") connection += "," + value.toLowerCase();
        break;
      case 14:
        if (name.toLowerCase() === "content-length") {
          if (!/^\d{1,15}$/.test(value)) throw new BadRequestError(`Bad Content-Length: "${value.slice(0, 40)}"`);
          const n = Number(value);
          if (contentLength !== undefined && contentLength !== n) throw new BadRequestError("Conflicting Content-Length headers");
          contentLength = n;
        }
        break;
      case 17:
        if (name.toLowerCase() === "transfer-encoding") {
          // Only chunked is decoded: a body in another coding ("gzip, chunked") would reach the app still coded.
          if (value.length !== 7 || value.toLowerCase() !== "chunked") throw new BadRequestError(`Unsupported Transfer-Encoding: "${value.slice(0, 40)}"`, 501);
          if (chunked) throw new BadRequestError("Transfer-Encoding chunked twice");
          chunked = true;
        }
        break;
    }
  }
  if (chunked) {
    // RFC 9112 §6.1 and §6.3: a proxy may have framed the body by the other header.
    if (contentLength !== undefined) throw new BadRequestError("Both Content-Length and Transfer-Encoding: the body's end is ambiguous");
    if (minor === 0) throw new BadRequestError("Transfer-Encoding in an HTTP/1.0 request");
  }
  const keepAlive = minor === 1 ? !connection.includes("close") : connection.includes("keep-alive");
  return { method, target, minor, headers, ...(host !== undefined ? { host } : {}), ...(contentLength !== undefined ? { contentLength } : {}), chunked, keepAlive, expectContinue };
}

/**
 * Incremental decoder of a request body (Content-Length or chunked). `feed` hands the body's
 * bytes to `onData` and returns what follows the body (the next request), or undefined while
 * the body is not complete.
 */
export class BodyDecoder {
  #remaining: number;
  #chunked: boolean;
  /** chunked: "size" line, "data", "crlf" after data, "trailer" lines. */
  #phase: "size" | "data" | "crlf" | "trailer" = "size";
  #line = "";
  done = false;

  constructor(
    head: { contentLength?: number; chunked: boolean },
    private readonly onData: (chunk: Uint8Array) => void,
  ) {
    this.#chunked = head.chunked;
    this.#remaining = head.chunked ? 0 : (head.contentLength ?? 0);
    if (!head.chunked && this.#remaining === 0) this.done = true;
  }

  /** @throws {BadRequestError} On malformed chunked framing. */
  feed(data: Uint8Array): Uint8Array | undefined {
    if (this.done) return data;
    if (!this.#chunked) {
      if (data.byteLength <= this.#remaining) {
        this.#remaining -= data.byteLength;
        if (data.byteLength) this.onData(data);
        if (this.#remaining === 0) this.done = true;
        return this.done ? data.subarray(data.byteLength) : undefined;
      }
      const n = this.#remaining;
      this.#remaining = 0;
      this.done = true;
      if (n) this.onData(data.subarray(0, n));
      return data.subarray(n);
    }
    let i = 0;
    while (i < data.byteLength) {
      if (this.#phase === "data") {
        const n = Math.min(this.#remaining, data.byteLength - i);
        this.onData(data.subarray(i, i + n));
        i += n;
        this.#remaining -= n;
        if (this.#remaining === 0) this.#phase = "crlf";
        continue;
      }
      // Line-oriented phases: collect up to LF.
      const lf = data.indexOf(10, i);
      const end = lf < 0 ? data.byteLength : lf;
      this.#line += latin1(data.subarray(i, end));
      if (this.#line.length > 8192) throw new BadRequestError("Bad chunked body: line too long");
      if (lf < 0) return undefined;
      i = lf + 1;
      // A line ends in CRLF, and holds no other CR: a proxy that ends lines at a bare LF (or CR)
      // would cut the body elsewhere, and take the rest of it for a request.
      const line = this.#line.slice(0, -1);
      if (this.#line.charCodeAt(line.length) !== 13 || line.includes("\r")) throw new BadRequestError("Bad chunked body: a line not ended by CRLF");
      this.#line = "";
      if (this.#phase === "crlf") {
        if (line !== "") throw new BadRequestError("Bad chunked body: missing CRLF after chunk data");
        this.#phase = "size";
      } else if (this.#phase === "size") {
        const hex = line.split(";", 1)[0]!.trim();
        if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) throw new BadRequestError(`Bad chunk size: "${line.slice(0, 40)}"`);
        this.#remaining = parseInt(hex, 16);
        this.#phase = this.#remaining === 0 ? "trailer" : "data";
      } else if (line === "") {
        this.done = true;
        return data.subarray(i);
      }
    }
    return undefined;
  }
}

const decoder = new TextDecoder("latin1");
export function latin1(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

const REASONS: Record<number, string> = {
  100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
  301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
  400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
  411: "Length Required", 412: "Precondition Failed", 413: "Payload Too Large", 415: "Unsupported Media Type", 416: "Range Not Satisfiable",
  408: "Request Timeout", 422: "Unprocessable Entity", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
  500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
};

const statusLines = new Map<number, string>();
/** "HTTP/1.1 200 OK\r\n", built once per status. */
export function statusLine(status: number): string {
  let line = statusLines.get(status);
  if (line === undefined) statusLines.set(status, (line = `HTTP/1.1 ${status} ${REASONS[status] ?? "Unknown"}\r\n`));
  return line;
}

let dateSecond = 0;
let dateLine = "";
/** The `date:` header line (with its CRLF), formatted once a second. */
export function dateHeader(): string {
  const s = Math.floor(Date.now() / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateLine = `date: ${new Date(s * 1000).toUTCString()}\r\n`;
  }
  return dateLine;
}
