import { describe, expect, test } from "bun:test";
import { FakeSocket } from "./_fake-socket.ts";
import { testLoop } from "./_test-loop.ts";
import { Connection } from "./connection.ts";
import { ConnectionBudget, ConnectionCaps, connectionBudget, fdReserve, HANDSHAKE_GRACE_MS, HELD_SHARE, openFileLimit } from "./connection-caps.ts";

const conn = (addr: string) => new Connection(new FakeSocket(), addr);
const sockOf = (c: Connection) => c.sock as FakeSocket;

describe("ConnectionCaps", () => {
  test("past the per-address cap, that address's oldest unauthenticated connection is closed", () => {
    const caps = new ConnectionCaps(100, 2);
    const [a1, a2, a3, b1] = [conn("10.0.0.1"), conn("10.0.0.1"), conn("10.0.0.1"), conn("10.0.0.2")];
    for (const c of [a1, a2, b1, a3]) {
      expect(caps.accept(c)).toBe(true);
      caps.handshaken(c, false);
    }
    expect((a1.sock as FakeSocket).terminated).toBe(true);
    expect((a2.sock as FakeSocket).terminated).toBe(false);
    expect((b1.sock as FakeSocket).terminated).toBe(false);
    expect(caps.capped).toBe(1);
  });

  test("past the per-identity cap, that certificate's oldest connection is closed, busy or not; another device's are not", () => {
    const caps = new ConnectionCaps(100, 2, undefined, undefined, 0, 3);
    const mine = [conn("10.0.0.1"), conn("10.0.0.2"), conn("10.0.0.3"), conn("10.0.0.4")];
    const other = conn("10.0.0.1");
    for (const c of [mine[0]!, other, ...mine.slice(1)]) {
      expect(caps.accept(c)).toBe(true);
      caps.handshaken(c, true, c === other ? "device-b" : "device-a");
      caps.active(c); // each mid-request (a body a byte a minute)
    }
    expect(mine.map((c) => sockOf(c).terminated)).toEqual([true, false, false, false]);
    expect(sockOf(other).terminated).toBe(false);
    expect(caps.size).toBe(4);
    // Its slot is the next one's: closed connections leave the count.
    caps.closed(mine[1]!);
    const again = conn("10.0.0.5");
    expect(caps.accept(again)).toBe(true);
    caps.handshaken(again, true, "device-a");
    expect(mine.slice(2).map((c) => sockOf(c).terminated)).toEqual([false, false]);
  });

  test("with a cap of one per identity, each new connection of it closes the one before", () => {
    const caps = new ConnectionCaps(100, 2, undefined, undefined, 0, 1);
    const conns = [conn("10.0.0.1"), conn("10.0.0.1"), conn("10.0.0.1")];
    for (const c of conns) {
      expect(caps.accept(c)).toBe(true);
      caps.handshaken(c, true, "device-a");
    }
    expect(conns.map((c) => sockOf(c).terminated)).toEqual([true, true, false]);
    expect(caps.size).toBe(1);
  });

  test("authenticated connections leave the per-address count and are not evicted while busy; when all are, a new one is refused", () => {
    const caps = new ConnectionCaps(2, 1);
    const dev = conn("10.0.0.1");
    expect(caps.accept(dev)).toBe(true);
    caps.handshaken(dev, true);
    const anon = conn("10.0.0.1");
    expect(caps.accept(anon)).toBe(true);
    caps.handshaken(anon, false);
    expect((dev.sock as FakeSocket).terminated).toBe(false);
    const next = conn("10.0.0.3"); // global cap: the unauthenticated one goes
    expect(caps.accept(next)).toBe(true);
    expect((anon.sock as FakeSocket).terminated).toBe(true);
    caps.authenticated(next);
    expect(caps.accept(conn("10.0.0.4"))).toBe(false);
    expect(caps.size).toBe(2);
  });

  test("past the cap with no unauthenticated connection, the longest idle one is ended, never a held or busy one", () => {
    const caps = new ConnectionCaps(4, 128);
    const [held, busy, early, late] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"].map(conn) as [Connection, Connection, Connection, Connection];
    for (const c of [held, busy, early, late]) {
      caps.accept(c);
      caps.handshaken(c, true);
      caps.idle(c); // awaiting its first request, as the listener leaves it
    }
    for (const c of [held, busy]) caps.active(c); // a request came on each
    expect(held.hold()).toBe(true);
    caps.active(early);
    caps.idle(early); // answered: idle again, now after `late`
    const first = conn("10.0.0.5");
    expect(caps.accept(first)).toBe(true);
    expect(sockOf(late).ended).toBe(true); // closed as an idle connection is: gracefully, not reset
    expect(sockOf(late).terminated).toBe(false);
    expect(sockOf(early).ended).toBe(false);
    const second = conn("10.0.0.6"); // `first` is still in its handshake, within its grace: `early` (idle) goes first
    expect(caps.accept(second)).toBe(true);
    expect(sockOf(first).terminated).toBe(false);
    expect(sockOf(early).ended).toBe(true);
    caps.handshaken(first, true);
    const third = conn("10.0.0.7"); // nothing idle, `second` in its grace: it goes all the same rather than refuse `third`
    expect(caps.accept(third)).toBe(true);
    expect(sockOf(second).terminated).toBe(true);
    caps.handshaken(third, true);
    expect(caps.accept(conn("10.0.0.8"))).toBe(false); // all busy or held now
    expect([held, busy, first, third].some((c) => sockOf(c).ended || sockOf(c).terminated)).toBe(false);
    expect(caps.held).toBe(1);
    expect(caps.size).toBe(4);
    expect(caps.capped).toBe(4);
  });

  test("a handshake past its grace, or one ended without a certificate, goes before an idle connection", () => {
    const caps = new ConnectionCaps(3, 128);
    const idle = conn("10.0.0.1");
    caps.accept(idle);
    caps.handshaken(idle, true);
    caps.idle(idle);
    const [slow, anon] = [conn("10.0.0.2"), conn("10.0.0.3")];
    caps.accept(slow);
    caps.accept(anon);
    caps.handshaken(anon, false); // no certificate: goes first, however young
    expect(caps.unauthenticated).toBe(2);
    expect(caps.accept(conn("10.0.0.4"))).toBe(true);
    expect(sockOf(anon).terminated).toBe(true);
    expect(sockOf(idle).ended).toBe(false);
    slow.acceptedAt -= HANDSHAKE_GRACE_MS; // still handshaking after its grace: a client holding the connection
    expect(caps.accept(conn("10.0.0.5"))).toBe(true);
    expect(sockOf(slow).terminated).toBe(true);
    expect(sockOf(idle).ended).toBe(false);
    expect(caps.capped).toBe(2);
  });

  test("a connection is idle from its answer's last byte sent until the next request's first byte", async () => {
    const caps = new ConnectionCaps(1, 128);
    const loop = testLoop({ fetch: () => new Response("x".repeat(100), { headers: { "content-length": "100" } }) });
    const sock = new FakeSocket(10); // takes 10 bytes a write: the answer waits in the queue
    const c = new Connection(sock, "10.0.0.1");
    caps.accept(c);
    caps.handshaken(c, true);
    c.authenticated = true;
    loop.awaitHead(c);
    expect(c.idle).toBe(true); // no request yet
    loop.onData(c, Buffer.from("GET / HTTP/1.1\r\nhost: gw.test\r\n", "latin1"));
    expect(c.idle).toBe(false); // part of a head came
    expect(caps.accept(conn("10.0.0.2"))).toBe(false);
    loop.onData(c, Buffer.from("\r\n", "latin1"));
    for (const until = Date.now() + 5000; c.busy && Date.now() < until; ) await Bun.sleep(1);
    expect(c.busy).toBe(false);
    expect(c.out.length).toBeGreaterThan(0);
    expect(c.idle).toBe(false); // answered, but its answer is not all sent
    expect(caps.accept(conn("10.0.0.3"))).toBe(false);
    sock.window = Infinity;
    c.flush();
    expect(c.idle).toBe(true);
    expect(caps.accept(conn("10.0.0.4"))).toBe(true);
    expect(sock.ended).toBe(true);
    expect(sock.text()).toEndWith("x".repeat(100)); // the whole answer went out before the close
  });

  test("connections still in their TLS handshake do not count against the per-address cap", () => {
    const caps = new ConnectionCaps(1000, 2);
    const burst = Array.from({ length: 50 }, () => conn("10.0.0.7"));
    for (const c of burst) expect(caps.accept(c)).toBe(true);
    for (const c of burst) caps.handshaken(c, true); // a device's 50 parallel connections
    expect(burst.some((c) => (c.sock as FakeSocket).terminated)).toBe(false);
  });

  test("held requests (push) take at most their share of the cap: the rest stays free for check-ins", () => {
    const caps = new ConnectionCaps(20, 128);
    const devices = Array.from({ length: 20 }, () => conn("10.0.0.5"));
    const held = devices.filter((c) => {
      caps.accept(c);
      caps.handshaken(c, true);
      return c.hold();
    });
    expect(held.length).toBe(Math.floor(20 * HELD_SHARE));
    expect(caps.held).toBe(held.length);
    expect(caps.holdsRefused).toBe(20 - held.length);
    // An answered hold, or a closed connection, gives its place back.
    caps.release(held[0]!);
    caps.closed(held[1]!);
    expect(caps.held).toBe(held.length - 2);
    const later = devices.slice(held.length);
    expect(later[0]!.hold()).toBe(true);
    expect(later[1]!.hold()).toBe(true);
    expect(held[0]!.hold()).toBe(false); // full again
    expect(held[1]!.hold()).toBe(false); // closed
  });

  test("the cap never exceeds what the open-file limit allows (else accept would fail before any eviction)", () => {
    expect(new ConnectionCaps(50_000, 128, undefined, connectionBudget(20_000)).maxConnections).toBe(20_000 - 5_000);
    expect(new ConnectionCaps(10_000, 128, undefined, connectionBudget(1_048_576)).maxConnections).toBe(10_000);
    expect(new ConnectionCaps(10_000, 128, undefined, undefined).maxConnections).toBe(10_000);
    const limit = openFileLimit();
    if (process.platform === "linux") expect(limit).toBeGreaterThan(0);
    expect(new ConnectionCaps(Number.MAX_SAFE_INTEGER, 128).maxConnections).toBe(limit === undefined ? Number.MAX_SAFE_INTEGER : Math.max(64, limit - fdReserve(limit)));
  });

  test("two listeners on one budget (the TLS port and the proxies' plain one) never hold more connections together than it allows", () => {
    const budget = new ConnectionBudget(4);
    const tls = new ConnectionCaps(100, 128, undefined, budget);
    const plain = new ConnectionCaps(100, 128, () => true, budget, 1);
    const busy = (caps: ConnectionCaps) => {
      const c = conn("10.0.0.1");
      expect(caps.accept(c)).toBe(true);
      caps.handshaken(c, true); // mid-request: neither unauthenticated nor idle, so never evicted
      return c;
    };
    const onTls = [busy(tls), busy(tls), busy(tls)];
    busy(plain);
    expect(budget.used).toBe(4);
    // Each listener's own cap (100) is far off, but the files are not.
    expect(tls.accept(conn("10.0.0.2"))).toBe(false);
    busy(plain); // the plain listener's room (its health checks, its 503 answers) is past the budget
    expect(plain.accept(conn("10.0.0.2"))).toBe(false);
    // At the budget a listener makes room among its own connections, as at its cap.
    const anon = conn("10.0.0.3");
    tls.closed(onTls[0]!);
    expect(tls.accept(anon)).toBe(false); // the plain listener's room still holds a file
    tls.closed(onTls[1]!);
    expect(tls.accept(anon)).toBe(true);
    const next = conn("10.0.0.4");
    expect(tls.accept(next)).toBe(true);
    expect(sockOf(anon).terminated).toBe(true);
    expect(budget.used).toBe(4);
    // A connection closed twice (ended idle, then its socket's close) frees its file once.
    tls.closed(onTls[2]!);
    tls.closed(onTls[2]!);
    expect(budget.used).toBe(3);
  });

  test("exempt addresses (trusted proxies) have no per-address cap", () => {
    const caps = new ConnectionCaps(100, 1, (a) => a === "10.9.9.9");
    const cs = Array.from({ length: 5 }, () => conn("10.9.9.9"));
    for (const c of cs) {
      expect(caps.accept(c)).toBe(true);
      caps.handshaken(c, false);
    }
    expect(cs.some((c) => (c.sock as FakeSocket).terminated)).toBe(false);
  });
});
