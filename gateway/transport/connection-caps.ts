/**
 * The connection caps: at most `maxConnections` in all and
 * `maxConnectionsPerAddress` unauthenticated ones (counted once their TLS
 * handshake is done) from one address. A new connection past a cap closes the oldest unauthenticated one (of that
 * address, for the per-address cap) rather than being refused, so clients
 * that hold connections without credentials cannot lock out a device that
 * connects meanwhile. Authenticated connections are never evicted; when all
 * of them are, the new connection is refused.
 *
 * @module
 */
import type { Connection } from "./connection.ts";

export class ConnectionCaps {
  readonly #all = new Set<Connection>();
  /** Unauthenticated connections, oldest first. */
  readonly #unauth = new Set<Connection>();
  readonly #byAddress = new Map<string, Set<Connection>>();
  /** Connections closed at accept or evicted. */
  capped = 0;

  constructor(
    readonly maxConnections: number,
    readonly maxPerAddress: number,
    /** Addresses the per-address cap does not apply to (trusted proxies). */
    private readonly exempt: (address: string) => boolean = () => false,
  ) {}

  get size(): number {
    return this.#all.size;
  }

  get unauthenticated(): number {
    return this.#unauth.size;
  }

  /**
   * Counts a new connection at accept (unauthenticated until its handshake says otherwise);
   * returns false if it must be refused. An evicted connection is terminated.
   */
  accept(c: Connection): boolean {
    if (this.#all.size >= this.maxConnections) {
      const victim = first(this.#unauth);
      if (!victim) {
        this.capped++;
        return false;
      }
      this.#evict(victim);
    }
    this.#all.add(c);
    this.#unauth.add(c);
    return true;
  }

  /**
   * The TLS handshake finished. The per-address cap counts from here, not from accept: a burst of
   * connections from one device (or one NAT) is not cut while it is still handshaking, and a client
   * with a certificate never counts.
   */
  handshaken(c: Connection, authenticated: boolean): void {
    if (authenticated) return this.authenticated(c);
    if (!this.#unauth.has(c) || this.exempt(c.remoteAddr)) return;
    let mine = this.#byAddress.get(c.remoteAddr);
    if (!mine) this.#byAddress.set(c.remoteAddr, (mine = new Set()));
    if (mine.size >= this.maxPerAddress) this.#evict(first(mine)!);
    mine.add(c);
  }

  /** The connection's client proved who it is: it no longer counts against the per-address cap and is never evicted. */
  authenticated(c: Connection): void {
    this.#unauth.delete(c);
    this.#leaveAddress(c);
  }

  closed(c: Connection): void {
    this.#all.delete(c);
    this.authenticated(c);
  }

  #evict(c: Connection): void {
    this.capped++;
    this.closed(c);
    c.sock.terminate();
  }

  #leaveAddress(c: Connection): void {
    const mine = this.#byAddress.get(c.remoteAddr);
    if (mine?.delete(c) && mine.size === 0) this.#byAddress.delete(c.remoteAddr);
  }
}

const first = <T>(s: Set<T>): T | undefined => s.values().next().value;
