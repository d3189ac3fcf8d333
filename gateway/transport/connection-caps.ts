/**
 * The connection caps: at most `maxConnections` in all and
 * `maxConnectionsPerAddress` unauthenticated ones (counted once their TLS
 * handshake is done) from one address. A new connection past a cap closes the oldest unauthenticated one (of that
 * address, for the per-address cap) rather than being refused, so clients
 * that hold connections without credentials cannot lock out a device that
 * connects meanwhile.
 *
 * A connection still in its TLS handshake is unauthenticated too, but for its first
 * HANDSHAKE_GRACE_MS it is taken only after the idle ones (below): when several devices connect at
 * the same moment at the cap, each new one would otherwise close the one accepted just before it,
 * still handshaking, and of a burst only the last would live while idle connections stayed open. A
 * handshake that outlasts the grace is a client holding a connection without credentials (or a
 * link too slow to matter), and goes first again. So an attacker's half-open handshakes shield
 * themselves only while younger than the grace: to make new arrivals close idle devices'
 * connections instead, it must open maxConnections of them within it, and those devices lose only
 * their kept-alive connection (they reconnect at their next request).
 *
 * Past `maxConnections` with no unauthenticated connection left, the connection idle longest is
 * closed instead, authenticated or not. Idle: no request in flight (one is from the first byte of
 * its head to the last byte of its answer handed to the socket), so never a held request; that
 * is a kept-alive connection between requests, or one whose first request has not begun. It is
 * closed as HTTP closes an inactive connection (RFC 9112 §9.5, §9.6: close_notify and FIN once
 * nothing is left to send, not a reset), which a kept-alive client takes as such and reconnects
 * for its next request. Else devices' and an admin's kept-alive connections would take the
 * connections held requests leave free (below) until their idle deadline, and every new
 * connection would be refused meanwhile. Only when every connection is authenticated and busy
 * (mid-request, or held) is a new one refused. The idle connections are a list threaded through
 * the connections themselves (as nginx keeps its reusable ones): a request starting or ending
 * costs a few pointer writes and no allocation, and the choice at the cap is the list's head.
 *
 * Held requests (a device's push long poll, GET /repo/wait) may take at most HELD_SHARE of
 * `maxConnections`: past it a handler asking to hold is told no (the device polls instead), so
 * the rest stays free for check-ins, registrations and the admin API however many devices hold
 * push. A held connection is never evicted: the slots are kept, not taken back.
 *
 * The open files are one budget for the whole process (ConnectionBudget): the TLS port and the
 * plain listener for proxies (plain.ts) each have caps of their own but draw on the same budget,
 * so the two together cannot take more descriptors than the open-file limit leaves for
 * connections. Without that each counted three quarters of the limit as its own, and a proxy's
 * connections plus the devices' could exhaust the files, after which accept fails for everyone.
 * A listener at the budget makes room among its own connections (as at its cap) or refuses.
 *
 * @module
 */
import { readFileSync } from "node:fs";

/**
 * How long a connection in its TLS handshake is passed over for an idle one at the cap (module
 * comment). A TLS 1.3 handshake with a client certificate takes about one round trip and the
 * server's signature: milliseconds on a LAN, up to a second or two on a congested cellular or
 * satellite link; 3 s covers those, and is short beside the head deadline that cuts a stalled one.
 */
export const HANDSHAKE_GRACE_MS = 3_000;

/** The share of `maxConnections` that held requests may take. */
export const HELD_SHARE = 0.9;

/**
 * Connections one device certificate may hold on a listener. A certificate is authenticated at its
 * handshake, and an authenticated connection is never closed for another while it is busy: one
 * device (a compromised one, firmware gone wrong; revoked, even, until a request tells) could open
 * thousands, each sending a body a byte a minute, and take every slot from the fleet. Past this
 * its oldest connection is closed. fioup uses a few at once (a check-in, a push wait, parallel
 * blob downloads, a command run by hand); a connection it loses it makes again.
 */
export const MAX_PER_IDENTITY = 32;

/**
 * File descriptors kept for everything but client connections (database, logs, and the blob files
 * being served: each download holds one besides its socket): a quarter of the limit, at least 512.
 */
export const fdReserve = (fdLimit: number): number => Math.max(512, Math.floor(fdLimit / 4));

/** The connections all the listeners of one process may hold together (module comment): `used` is counted by their caps. */
export class ConnectionBudget {
  used = 0;
  constructor(readonly limit: number) {}
}

/** The budget the open-file limit leaves for connections (the limit less fdReserve, at least 64), or undefined when the limit is unknown or unlimited. */
export function connectionBudget(fdLimit = openFileLimit()): ConnectionBudget | undefined {
  return fdLimit === undefined ? undefined : new ConnectionBudget(Math.max(64, fdLimit - fdReserve(fdLimit)));
}

/**
 * What the caps need of a connection. Declared here, not imported: connection.ts's Connection has
 * these members and refers to its caps, so the two files would import each other.
 */
export interface CountedConnection {
  readonly sock: { terminate(): void };
  readonly remoteAddr: string;
  held: boolean;
  caps: ConnectionCaps | undefined;
  /** Closes the connection gracefully once what is queued is sent: how the caps close an idle one. */
  end(): void;
  /** In the caps' idle list (`idle`), and its neighbours there: kept by ConnectionCaps alone. */
  idle: boolean;
  /** When the caps accepted it (performance.now(), ms): a handshake younger than HANDSHAKE_GRACE_MS gives way to idle connections. */
  acceptedAt: number;
  idlePrev: CountedConnection | undefined;
  idleNext: CountedConnection | undefined;
  /** Whose certificate it presented (a device's uuid), once authenticated with one: kept by ConnectionCaps alone. */
  identity?: string | undefined;
}

/** The process's open-file limit (Linux, /proc/self/limits; Bun raises it to the hard limit at start), or undefined when unknown or unlimited. */
export function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export class ConnectionCaps {
  readonly #all = new Set<CountedConnection>();
  /** Connections in their TLS handshake (accepted, not yet handshaken), oldest first. */
  readonly #handshaking = new Set<CountedConnection>();
  /** Connections whose handshake ended without a certificate (and not authenticated since), oldest first. */
  readonly #unauth = new Set<CountedConnection>();
  readonly #byAddress = new Map<string, Set<CountedConnection>>();
  /** Authenticated connections by the identity of their certificate, oldest first (MAX_PER_IDENTITY). */
  readonly #byIdentity = new Map<string, Set<CountedConnection>>();
  /** Idle connections, longest idle first (linked through `idlePrev`/`idleNext`). */
  #idleFirst: CountedConnection | undefined;
  #idleLast: CountedConnection | undefined;
  /** Connections closed at accept, evicted or closed idle for a new one. */
  capped = 0;
  /** Connections holding a request now (see `hold`), and the most there may be. */
  held = 0;
  readonly maxHeld: number;
  /** Holds refused because `maxHeld` were held. */
  holdsRefused = 0;

  /** The cap in force: `maxConnections` as asked, or fewer if the open-file limit would run out first. */
  readonly maxConnections: number;

  constructor(
    maxConnections: number,
    readonly maxPerAddress: number,
    /** Addresses the per-address cap does not apply to (trusted proxies). */
    private readonly exempt: (address: string) => boolean = () => false,
    /** The open files for connections, shared with the process's other listener if it has one (default: a budget of this listener's own). */
    readonly budget: ConnectionBudget | undefined = connectionBudget(),
    /** Connections taken past `maxConnections` (out of the fd reserve), for a listener that answers those itself (plain.ts: 503, health checks); they do not widen the held share. */
    readonly room = 0,
    readonly maxPerIdentity = MAX_PER_IDENTITY,
  ) {
    // Past the open-file limit accept fails before the cap could close an unauthenticated connection
    // to make room: the cap must come first, or clients without credentials could lock devices out.
    this.maxConnections = budget === undefined ? maxConnections : Math.min(maxConnections, budget.limit);
    this.maxHeld = Math.max(1, Math.floor(this.maxConnections * HELD_SHARE));
  }

  get size(): number {
    return this.#all.size;
  }

  /** Connections not (yet) authenticated: in their handshake, or past it without a certificate. */
  get unauthenticated(): number {
    return this.#handshaking.size + this.#unauth.size;
  }

  /**
   * Counts a new connection at accept (unauthenticated until its handshake says otherwise);
   * returns false if it must be refused. At the cap, in this order: the oldest connection whose
   * handshake ended without a certificate, or else the oldest handshake past its grace, is
   * terminated; the longest idle one is ended; the oldest handshake within its grace is terminated.
   */
  accept(c: CountedConnection): boolean {
    const budget = this.budget;
    const now = performance.now();
    if (this.#all.size >= this.maxConnections + this.room || (budget !== undefined && budget.used >= budget.limit + this.room)) {
      const handshaking = first(this.#handshaking);
      const victim = first(this.#unauth) ?? (handshaking && now - handshaking.acceptedAt >= HANDSHAKE_GRACE_MS ? handshaking : undefined);
      if (victim) this.#evict(victim);
      else if (this.#idleFirst) this.#closeIdle(this.#idleFirst);
      else if (handshaking) this.#evict(handshaking);
      else {
        this.capped++;
        return false;
      }
    }
    this.#all.add(c);
    if (budget) budget.used++;
    c.acceptedAt = now;
    this.#handshaking.add(c);
    c.caps = this;
    return true;
  }

  /**
   * The connection waits for its next request, with nothing left to send: it goes last in the
   * idle list. Per request: no allocation.
   */
  idle(c: CountedConnection): void {
    if (c.idle) return;
    c.idle = true;
    c.idlePrev = this.#idleLast;
    if (this.#idleLast) this.#idleLast.idleNext = c;
    else this.#idleFirst = c;
    this.#idleLast = c;
  }

  /** A request started on the connection (its first bytes came): it leaves the idle list. */
  active(c: CountedConnection): void {
    if (!c.idle) return;
    c.idle = false;
    const { idlePrev: prev, idleNext: next } = c;
    if (prev) prev.idleNext = next;
    else this.#idleFirst = next;
    if (next) next.idlePrev = prev;
    else this.#idleLast = prev;
    c.idlePrev = c.idleNext = undefined;
  }

  /** The connection's current request is to be held open (a long poll): false when `maxHeld` are held already. */
  hold(c: CountedConnection): boolean {
    if (c.held) return true;
    if (this.held >= this.maxHeld || !this.#all.has(c)) {
      this.holdsRefused++;
      return false;
    }
    c.held = true;
    this.held++;
    return true;
  }

  /** The held request is answered (or its connection closed). */
  release(c: CountedConnection): void {
    if (!c.held) return;
    c.held = false;
    this.held--;
  }

  /**
   * The TLS handshake finished. The per-address cap counts from here, not from accept: a burst of
   * connections from one device (or one NAT) is not cut while it is still handshaking, and a client
   * with a certificate never counts.
   */
  handshaken(c: CountedConnection, authenticated: boolean, identity?: string): void {
    if (authenticated) {
      this.authenticated(c);
      if (identity !== undefined) this.#identified(c, identity);
      return;
    }
    if (!this.#handshaking.delete(c)) return;
    this.#unauth.add(c);
    if (this.exempt(c.remoteAddr)) return;
    let mine = this.#byAddress.get(c.remoteAddr);
    if (!mine) this.#byAddress.set(c.remoteAddr, (mine = new Set()));
    if (mine.size >= this.maxPerAddress) this.#evict(first(mine)!);
    mine.add(c);
  }

  /** The connection's client proved who it is: it no longer counts against the per-address cap, and is closed for a new connection only while idle. */
  authenticated(c: CountedConnection): void {
    this.#handshaking.delete(c);
    this.#unauth.delete(c);
    this.#leaveAddress(c);
  }

  closed(c: CountedConnection): void {
    this.release(c);
    this.active(c);
    if (this.#all.delete(c) && this.budget) this.budget.used--;
    this.authenticated(c);
    if (c.identity !== undefined) {
      const mine = this.#byIdentity.get(c.identity);
      if (mine?.delete(c) && mine.size === 0) this.#byIdentity.delete(c.identity);
    }
  }

  /** A connection of `identity`'s certificate: past MAX_PER_IDENTITY of them, the oldest is closed. */
  #identified(c: CountedConnection, identity: string): void {
    if (!this.#all.has(c)) return;
    c.identity = identity;
    let mine = this.#byIdentity.get(identity);
    if (!mine) this.#byIdentity.set(identity, (mine = new Set()));
    if (mine.size >= this.maxPerIdentity) {
      this.#evict(first(mine)!);
      this.#byIdentity.set(identity, mine); // closing the last one took the set out of the map
    }
    mine.add(c);
  }

  #evict(c: CountedConnection): void {
    this.capped++;
    this.closed(c);
    c.sock.terminate();
  }

  /** Its slot is free at once; the socket goes once the client closes its side (or the closing deadline cuts it). */
  #closeIdle(c: CountedConnection): void {
    this.capped++;
    this.closed(c);
    c.end();
  }

  #leaveAddress(c: CountedConnection): void {
    const mine = this.#byAddress.get(c.remoteAddr);
    if (mine?.delete(c) && mine.size === 0) this.#byAddress.delete(c.remoteAddr);
  }
}

const first = <T>(s: Set<T>): T | undefined => s.values().next().value;
