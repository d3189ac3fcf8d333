/**
 * One connection's state and its output: bytes the socket did not take yet
 * are queued in order, reading pauses and resumes with backpressure, and one
 * deadline at a time says when the connection is cut (the listener's sweep
 * enforces it). Requests on a connection are handled one at a time.
 *
 * Deadlines are on the monotonic clock (performance.now(), as cheap as Date.now() per request):
 * on the wall clock a step back of an hour turned off the head, body and stall deadlines of every
 * connection open at the step, and a step forward cut them all at once, downloads included.
 *
 * @module
 */
import type { ClientConnection, PeerIdentity } from "../env.ts";
import type { ConnectionCaps } from "./connection-caps.ts";
import { type BodyDecoder, dateHeader, statusLine } from "./http1.ts";

/** What a connection needs of its socket (Bun's TLS socket; a fake in unit tests). */
export interface WireSocket {
  /** Returns how many bytes the socket took; the rest is written on the next `drain`. */
  write(data: Uint8Array): number;
  end(): void;
  terminate(): void;
  pause(): void;
  resume(): void;
}

/**
 * - `head`: the next request head must be complete by then (answered 408 if part of it came).
 * - `body`: the current request's body must be complete by then (408).
 * - `stall`: progress must be made by then; re-armed on each read (body) or write (answer), suspended while we paused reading.
 * - `closing`: the connection is ending; cut it if the client has not closed by then (re-armed while the last answer is still flushing).
 */
export type DeadlineKind = "head" | "body" | "stall" | "closing";

/** How long an ending connection may go without taking any of its last answer, or without closing, before it is cut. */
export const CLOSING_MS = 2_000;

export class Connection implements ClientConnection {
  /** Received bytes not parsed yet (the next request's head). */
  buf: Buffer | undefined;
  /** A request is being handled; further bytes wait in `buf`. */
  busy = false;
  /** The current request's body, until complete. */
  body: BodyDecoder | undefined;
  bodyDone: (() => void) | undefined;
  bodyFailed: ((err: Error) => void) | undefined;
  /** The current request's body will not be read (refused before it): the connection cannot take another request. */
  bodyUnread = false;
  /** The answer to the current request has started going out. */
  responding = false;
  /** Bytes the socket did not take yet, in order. */
  readonly out: Uint8Array[] = [];
  /** Resolved when `out` is empty or the connection is gone. */
  readonly flushed: (() => void)[] = [];
  paused = false;
  /** The last answer is out (or going): nothing more is sent, whatever still arrives is dropped. */
  ending = false;
  closed = false;
  /** Called when the connection goes away mid-request. */
  onClose: (() => void) | undefined;
  /** The verified client certificate's identity (null: none); set at the TLS handshake. */
  peer: PeerIdentity | null | undefined;
  /** The name in the proxy certificate this client presented from a --trust-proxy address (TLS port, listen.ts): its forwarded certificate header is believed. */
  proxy: string | undefined;
  /** The client proved who it is (certificate, or a valid token on an earlier request): the lenient deadlines apply. */
  authenticated = false;
  /** When the connection is cut (performance.now() ms, 0: never) and why. */
  deadline = 0;
  deadlineKind: DeadlineKind = "head";
  /** The length of a `stall` deadline, to re-arm it. */
  stallMs = 0;
  /** The caps that counted this connection in (set at accept), and whether its request is held (`hold`). */
  caps: ConnectionCaps | undefined;
  held = false;
  /** In the caps' idle list, and its neighbours there (connection-caps.ts keeps them). */
  idle = false;
  /** When the caps accepted it (connection-caps.ts: a young handshake gives way to idle connections). */
  acceptedAt = 0;
  idlePrev: Connection | undefined;
  idleNext: Connection | undefined;
  /** Whose certificate it presented, once authenticated with one (connection-caps.ts: MAX_PER_IDENTITY). */
  identity: string | undefined = undefined;

  constructor(
    readonly sock: WireSocket,
    readonly remoteAddr: string,
  ) {}

  /**
   * Between requests (none in flight, no part of the next one read) with nothing left to send:
   * idle, so the caps may close the connection for a new one (connection-caps.ts). Called where
   * the next request head is awaited, and when an answer's last bytes leave the queue.
   */
  waiting(): void {
    if (!this.busy && !this.buf && !this.out.length && !this.ending && !this.closed) this.caps?.idle(this);
  }

  /** The current request is to be held open (a long poll): false if the caps keep the remaining slots for other requests. */
  hold(): boolean {
    return this.caps ? this.caps.hold(this) : !this.closed;
  }

  /** Sets the one deadline of this connection. */
  arm(kind: DeadlineKind, ms: number): void {
    this.deadlineKind = kind;
    if (kind === "stall" || kind === "closing") this.stallMs = ms;
    this.deadline = performance.now() + ms;
  }

  /** Bytes moved: a `stall` deadline starts over, and so does `closing` while the last answer still flushes. */
  progress(): void {
    if (this.deadlineKind === "stall" || this.deadlineKind === "closing") this.deadline = performance.now() + this.stallMs;
  }

  disarm(): void {
    this.deadline = 0;
  }

  send(data: Uint8Array): void {
    if (this.closed || this.ending || data.byteLength === 0) return;
    if (this.out.length) {
      this.out.push(data);
      return;
    }
    const n = this.sock.write(data);
    if (n < data.byteLength) this.out.push(data.subarray(Math.max(0, n)));
  }

  /** Writes what is queued (on `drain`); resolves waiters once all of it is out. */
  flush(): void {
    while (this.out.length && !this.closed) {
      const head = this.out[0]!;
      const n = this.sock.write(head);
      if (n > 0) this.progress();
      if (n < head.byteLength) {
        this.out[0] = head.subarray(Math.max(0, n));
        return;
      }
      this.out.shift();
    }
    this.#wake();
    this.waiting(); // the last answer's tail just went out
  }

  /** Resolves the `whenFlushed` waiters (the queue is empty or the connection is gone). */
  #wake(): void {
    if (this.flushed.length) for (const w of this.flushed.splice(0)) w();
  }

  /** The socket closed: waiters on the output are released. */
  gone(): void {
    this.closed = true;
    this.#wake();
  }

  whenFlushed(): Promise<void> {
    if (!this.out.length || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.flushed.push(resolve));
  }

  pause(): void {
    if (!this.paused && !this.closed) {
      this.paused = true;
      this.sock.pause();
    }
  }

  resume(): void {
    if (this.paused && !this.closed) {
      this.paused = false;
      this.sock.resume();
      this.progress(); // time spent paused was ours, not the client's
    }
  }

  /** Closes the connection once what is queued is sent; anything still arriving is dropped. */
  end(): void {
    if (this.ending) return;
    this.ending = true;
    this.resume();
    this.arm("closing", CLOSING_MS); // a client that never reads or closes its side is cut off
    // Usually the last answer went out whole (a new connection per request): end now, no promise.
    if (!this.out.length) {
      if (!this.closed) this.sock.end();
      return;
    }
    void this.whenFlushed().then(() => {
      if (!this.closed) this.sock.end();
    });
  }

  /** A short JSON error answer written by the transport itself, then the connection closes. */
  fail(status: number, message: string): void {
    if (this.ending || this.closed) return;
    if (!this.responding) {
      const body = Buffer.from(JSON.stringify({ error: message }));
      this.send(Buffer.from(`${statusLine(status)}content-type: application/json\r\ncontent-length: ${body.byteLength}\r\nconnection: close\r\n${dateHeader()}\r\n`, "latin1"));
      this.send(body);
    }
    this.busy = true;
    this.end();
  }
}
