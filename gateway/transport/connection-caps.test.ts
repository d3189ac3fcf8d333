import { describe, expect, test } from "bun:test";
import { FakeSocket } from "./_fake-socket.ts";
import { Connection } from "./connection.ts";
import { ConnectionCaps, fdReserve, HELD_SHARE, openFileLimit } from "./connection-caps.ts";

const conn = (addr: string) => new Connection(new FakeSocket(), addr);

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

  test("authenticated connections leave the per-address count and are never evicted; when all are, a new one is refused", () => {
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
    expect(new ConnectionCaps(50_000, 128, undefined, 20_000).maxConnections).toBe(20_000 - 5_000);
    expect(new ConnectionCaps(10_000, 128, undefined, 1_048_576).maxConnections).toBe(10_000);
    expect(new ConnectionCaps(10_000, 128, undefined, undefined).maxConnections).toBe(10_000);
    const limit = openFileLimit();
    if (process.platform === "linux") expect(limit).toBeGreaterThan(0);
    expect(new ConnectionCaps(Number.MAX_SAFE_INTEGER, 128).maxConnections).toBe(limit === undefined ? Number.MAX_SAFE_INTEGER : Math.max(64, limit - fdReserve(limit)));
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
