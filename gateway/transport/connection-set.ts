/**
 * What both listeners of the transport share, the TLS port (listen.ts) and the plain port for a
 * TLS-terminating proxy (plain.ts): the open connections, counted in by the caps at accept, the
 * request loop that serves them, the sweep that cuts the ones past their deadline, and the
 * closing. Each listener adds only what is its own: the TLS handshake, or who may connect.
 *
 * @module
 */
import { Connection, type WireSocket } from "./connection.ts";
import type { ConnectionCaps } from "./connection-caps.ts";
import type { TransportLimits } from "./options.ts";
import { ClientGoneError, type LoopOptions, RequestLoop, RequestTimeoutError } from "./requests.ts";

const seconds = (ms: number) => `${ms / 1000} s`;

export class ConnectionSet {
  readonly conns = new Set<Connection>();
  readonly loop: RequestLoop;
  /** Connections cut by a head, body or stall deadline (not counting a head deadline with nothing of a request). */
  timedOut = 0;
  #stopping = false;
  #allClosed: (() => void) | undefined;
  readonly #sweep: ReturnType<typeof setInterval>;

  constructor(
    opts: LoopOptions,
    readonly limits: TransportLimits,
    readonly caps: ConnectionCaps,
  ) {
    this.loop = new RequestLoop(opts, limits, { stopping: () => this.#stopping, authenticated: (c) => caps.authenticated(c) });
    const tickMs = Math.max(20, Math.min(500, Math.min(limits.headTimeoutMs, limits.bodyTimeoutMs, limits.idleTimeoutMs) / 20));
    this.#sweep = setInterval(() => {
      const now = performance.now(); // the deadlines' clock (connection.ts)
      for (const c of this.conns) {
        if (!c.deadline || now < c.deadline) continue;
        // We stopped reading (pipelined bytes wait their turn): a request body's stall is then our
        // delay, not the client's. An answer that does not move is the client's all the same.
        if (c.paused && c.deadlineKind === "stall" && !c.responding) c.progress();
        else this.#expire(c);
      }
    }, tickMs);
  }

  /**
   * A new connection: counted in by the caps and its first head awaited, or, past them (or while
   * stopping), cut at once (undefined). `authenticated` for a client that needs no proof (a
   * trusted proxy's): the lenient deadlines apply and the caps never take it for an unauthenticated one.
   */
  open(sock: WireSocket, remoteAddr: string, authenticated = false): Connection | undefined {
    const c = new Connection(sock, remoteAddr);
    if (this.#stopping || !this.caps.accept(c)) {
      c.closed = true;
      sock.terminate();
      return undefined;
    }
    if (authenticated) {
      c.authenticated = true;
      this.caps.authenticated(c);
    }
    this.conns.add(c);
    this.loop.awaitHead(c);
    return c;
  }

  /** The socket closed. */
  closed(c: Connection): void {
    c.closed = true;
    this.caps.closed(c);
    if (!this.conns.delete(c)) return;
    c.onClose?.();
    if (c.body && !c.body.done) c.bodyFailed?.(new ClientGoneError());
    c.gone();
    if (this.conns.size === 0) this.#allClosed?.();
  }

  /** Connections with a request in flight (from its head until its answer is handed to the socket). */
  busy(): number {
    let n = 0;
    for (const c of this.conns) if (c.busy) n++;
    return n;
  }

  /** After the listener stopped accepting: idle connections end, in-flight requests get `graceMs`, then every connection is cut. */
  close(graceMs: number): Promise<void> {
    this.#stopping = true;
    return new Promise<void>((done) => {
      for (const c of this.conns) if (!c.busy) c.sock.end();
      const finish = () => {
        clearInterval(this.#sweep);
        done();
      };
      if (this.conns.size === 0) return finish();
      const t = setTimeout(() => {
        for (const c of this.conns) c.sock.terminate();
      }, graceMs);
      this.#allClosed = () => {
        clearTimeout(t);
        finish();
      };
    });
  }

  /** The listener could not start: no sweep left running. */
  abandon(): void {
    clearInterval(this.#sweep);
  }

  /** A connection is past its deadline. */
  #expire(c: Connection): void {
    const kind = c.deadlineKind;
    const limits = this.limits;
    if (kind === "closing") {
      c.sock.terminate();
      return;
    }
    if (kind === "head" && !c.buf?.byteLength) {
      if (!c.authenticated) this.timedOut++;
      c.end(); // nothing of a request came: just close
      return;
    }
    this.timedOut++;
    if (kind === "stall" && c.responding) {
      c.sock.terminate(); // the client stopped reading the answer
      return;
    }
    const what =
      kind === "head"
        ? `the request head was not complete within ${seconds(c.authenticated ? limits.idleTimeoutMs : limits.headTimeoutMs)}`
        : kind === "body"
          ? `the request body was not complete within ${seconds(limits.bodyTimeoutMs)}`
          : `no request body bytes for ${seconds(c.stallMs)}`;
    c.bodyFailed?.(new RequestTimeoutError(`Request timeout: ${what}`));
    c.fail(408, `Request timeout: ${what}`);
  }
}
