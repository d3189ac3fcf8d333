/**
 * A request's body as the web `Request` wants it, fed by the socket's reads:
 * small bodies (check-ins) are gathered whole before the handler runs, which
 * is far cheaper than a stream; larger ones (registry uploads) are a stream
 * that pauses the socket when the handler falls behind, so memory stays flat
 * whatever the upload size.
 *
 * @module
 */
import type { Connection } from "./connection.ts";
import { BodyDecoder, type RequestHead } from "./http1.ts";

/** Bodies up to this declared length are read whole before the handler runs; larger ones stream. */
export const SMALL_BODY = 64 * 1024;
/** Request-body bytes gathered for a busy handler above which the socket stops reading. */
export const BODY_HIGH_WATER = 1024 * 1024;
const EMPTY = new Uint8Array(0);
const CONTINUE = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n");

export type StartedBody = Uint8Array | ReadableStream<Uint8Array> | undefined;

/** Whether the head announces a body. */
export const hasBody = (head: RequestHead) => head.chunked || (head.contentLength ?? 0) > 0;

/** Whether the body will reach the handler as a stream (long uploads). */
export const streamsBody = (head: RequestHead) => head.chunked || (head.contentLength ?? 0) > SMALL_BODY;

/**
 * Sets up the body of `head` on `c` (the socket's later reads go to its decoder) and returns it:
 * bytes, a promise of bytes, a stream, or undefined when the handler does not want it (GET, HEAD:
 * the body is skipped, keeping the framing). `rest` holds the bytes read after the head, in a buffer
 * of the caller's own (a body that came whole is returned as a view of it). Must run
 * synchronously after the head is taken off `c.buf`, before any await.
 */
export function startBody(c: Connection, head: RequestHead, rest: Uint8Array, wanted: boolean): StartedBody | Promise<Uint8Array> {
  if (!hasBody(head)) {
    if (rest.byteLength) c.buf = Buffer.from(rest);
    return wanted ? EMPTY : undefined;
  }
  if (head.expectContinue) c.send(CONTINUE);
  const feedFirst = (decoder: BodyDecoder) => {
    c.body = decoder;
    const after = decoder.feed(rest);
    if (after?.byteLength) c.buf = Buffer.from(after);
    if (decoder.done) c.bodyDone?.();
  };
  if (!wanted) {
    feedFirst(new BodyDecoder(head, () => {}));
    return undefined;
  }
  if (!streamsBody(head)) {
    const length = head.contentLength!;
    if (rest.byteLength >= length) {
      // The whole body came with the head (a check-in's): its bytes as they are (`rest` is the transport's own copy), no decoder.
      if (rest.byteLength > length) c.buf = Buffer.from(rest.subarray(length));
      return rest.subarray(0, length);
    }
    const bytes = new Uint8Array(length);
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
  return streamBody(c, head, feedFirst);
}

/**
 * Bytes that arrive while the handler is busy (writing the last chunk to disk) are gathered and
 * handed over as one chunk at its next read: few large writes instead of one per TLS record. Past
 * BODY_HIGH_WATER the socket stops reading until the handler catches up.
 */
function streamBody(c: Connection, head: RequestHead, feedFirst: (d: BodyDecoder) => void): ReadableStream<Uint8Array> {
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
    else c.resume();
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
          c.resume();
        }
      },
      cancel() {
        cancelled = true;
        pending = [];
        c.resume(); // keep reading (and dropping) so the connection can answer and close
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
      else if (pendingBytes >= BODY_HIGH_WATER) c.pause();
    }),
  );
  return stream;
}
