/**
 * Writes a web `Response` on a connection as HTTP/1.1: most answers are one
 * small chunk and go out with a Content-Length, head and body in one TLS
 * write; longer ones stream (chunked unless the length is known) at the pace
 * the client reads them.
 *
 * @module
 */
import type { Connection } from "./connection.ts";
import { dateHeader, type RequestHead, statusLine } from "./http1.ts";
import type { HeadAnswer } from "./options.ts";

const EMPTY = new Uint8Array(0);
const CRLF = Buffer.from("\r\n");
const LAST_CHUNK = Buffer.from("0\r\n\r\n");
/** Answers up to this size that say their length are read in one go rather than through a stream reader. */
const SMALL_BODY = 64 * 1024;

/** Head and body in one TLS write. */
function sendWhole(c: Connection, head: string, body: Uint8Array) {
  const out = Buffer.allocUnsafe(head.length + body.byteLength);
  out.write(head, 0, "latin1");
  out.set(body, head.length);
  c.send(out);
}

/** The connection header an answer needs: none on a kept-alive HTTP/1.1 connection. */
function connectionHeader(keepAlive: boolean, req: RequestHead): string {
  return !keepAlive ? "connection: close\r\n" : req.minor === 0 ? "connection: keep-alive\r\n" : "";
}

/**
 * Writes an answer the app serialised itself (TransportOptions.fetchHead) in one write: the same
 * bytes as writeResponse writes for a Response of that status, headers (in Headers' order) and
 * body. Returns whether the connection can take another request.
 */
export function writeHeadAnswer(c: Connection, answer: HeadAnswer, req: RequestHead, reusable: boolean): boolean {
  c.responding = true;
  const status = answer.status;
  const keepAlive = req.keepAlive && reusable;
  const head = statusLine(status) + answer.head + dateHeader() + connectionHeader(keepAlive, req);
  const body = answer.body;
  if (status === 204 || status === 304 || status < 200) c.send(Buffer.from(`${head}\r\n`, "latin1"));
  else if (!body || req.method === "HEAD") c.send(Buffer.from(`${head}content-length: ${body?.byteLength ?? 0}\r\n\r\n`, "latin1"));
  else sendWhole(c, `${head}content-length: ${body.byteLength}\r\n\r\n`, body);
  return keepAlive;
}

/**
 * Writes the answer to `req`; returns whether the connection can take another request.
 * `reusable` is false when the transport must close after this answer (stopping, or the
 * request's body was not read to its end); an answer with `connection: close` closes it too.
 */
export async function writeResponse(c: Connection, response: Response, req: RequestHead, reusable: boolean): Promise<boolean> {
  c.responding = true;
  const isHead = req.method === "HEAD";
  const status = response.status;
  let head = statusLine(status);
  let length: string | undefined;
  let closeAsked = false;
  // forEach gives each Set-Cookie value on its own (never joined), so no getSetCookie() array per answer.
  response.headers.forEach((v, k) => {
    if (k === "content-length") length = v;
    else if (k === "connection") closeAsked = v.toLowerCase().includes("close"); // the handler wants the connection closed after this answer
    else if (k !== "transfer-encoding" && k !== "keep-alive") head += `${k}: ${v}\r\n`;
  });
  const keepAlive = req.keepAlive && reusable && !closeAsked;
  head += dateHeader() + connectionHeader(keepAlive, req);
  const noBody = isHead || status === 204 || status === 304 || status < 200;
  if (!noBody && length !== undefined && Number(length) <= SMALL_BODY) {
    // A small answer that says its length (a check-in's): read whole, without a stream reader, one write.
    let body: Uint8Array;
    try {
      body = await response.bytes();
    } catch (err) {
      console.error("gateway: response body failed:", err);
      c.sock.terminate();
      return false;
    }
    head += `content-length: ${body.byteLength}\r\n\r\n`;
    sendWhole(c, head, body);
    return keepAlive;
  }
  if (noBody || !response.body) {
    if (length !== undefined && (isHead || status === 304)) head += `content-length: ${length}\r\n`;
    else if (!noBody) head += "content-length: 0\r\n";
    c.send(Buffer.from(head + "\r\n", "latin1"));
    await response.body?.cancel().catch(() => {});
    return keepAlive;
  }
  const reader = response.body.getReader();
  try {
    const first = await reader.read();
    const second = first.done ? first : await reader.read();
    if (second.done) {
      const body = first.done ? EMPTY : first.value;
      head += `content-length: ${length ?? body.byteLength}\r\n\r\n`;
      sendWhole(c, head, body);
      return keepAlive;
    }
    const chunked = length === undefined;
    head += chunked ? "transfer-encoding: chunked\r\n\r\n" : `content-length: ${length}\r\n\r\n`;
    c.send(Buffer.from(head, "latin1"));
    const write = (chunk: Uint8Array) => {
      if (!chunk.byteLength) return;
      c.send(chunked ? Buffer.concat([Buffer.from(`${chunk.byteLength.toString(16)}\r\n`), chunk, CRLF]) : chunk);
    };
    write(first.value!);
    let chunk: Awaited<ReturnType<typeof reader.read>> = second;
    while (!chunk.done) {
      write(chunk.value);
      await c.whenFlushed();
      if (c.closed || c.ending) {
        await reader.cancel().catch(() => {});
        return false;
      }
      chunk = await reader.read();
    }
    if (chunked) c.send(LAST_CHUNK);
    return keepAlive;
  } catch (err) {
    // The body failed midway: the client sees a cut answer, not a wrong one.
    console.error("gateway: response body failed:", err);
    await reader.cancel().catch(() => {});
    c.sock.terminate();
    return false;
  }
}
