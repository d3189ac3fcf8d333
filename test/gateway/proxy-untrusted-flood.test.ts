/**
 * `gateway serve --proxy-listen ADDR --trust-proxy 127.0.0.2`: clients from any other address are
 * refused at accept, before anything of theirs is read, so they hold a file descriptor for
 * moments and cannot starve the TLS port. Real sockets from several loopback source addresses
 * (127.0.0.x, bound as the client's local address): an untrusted connection sending a partial
 * head is closed at once; a device keeps checking in over TLS while thousands of untrusted
 * connections churn, and the gateway's open files stay few; the trusted proxy is still served.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { freePort } from "../harness/tmp.ts";
import { registerDevice, type TlsDevice } from "./_register.ts";

const PROXY = "127.0.0.2";
const FLOODERS = ["127.0.0.22", "127.0.0.23", "127.0.0.24"];
/** What the reviewer's flooders sent: a request head that never ends. */
const PARTIAL_HEAD = "GET /healthz HTTP/1.1\r\n";

let gw: GatewayHandle;
let plainPort: number;
let dev: TlsDevice;

beforeAll(async () => {
  plainPort = await freePort();
  gw = await startGateway({ args: ["--trust-proxy", PROXY, "--proxy-listen", `127.0.0.1:${plainPort}`, "--head-timeout", "5"] });
  dev = await registerDevice(gw.url, gw.adminToken, gw.caPem);
});
afterAll(() => gw?.stop(), 30_000);

const openFiles = () => readdirSync(`/proc/${gw.pid}/fd`).length;

/** Connects from `localAddress`, sends `data`; resolves with how long until the server closed the connection and what it answered (null: still open after `waitMs`). */
function closedAfter(localAddress: string, data: string, waitMs = 3000): Promise<{ ms: number | null; got: string }> {
  return new Promise((resolve) => {
    let got = "";
    let t0 = 0;
    const sock = connect({ host: "127.0.0.1", port: plainPort, localAddress }, () => {
      t0 = performance.now();
      sock.write(data);
    });
    const done = (ms: number | null) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ ms, got });
    };
    const timer = setTimeout(() => done(null), waitMs);
    sock.on("data", (d) => (got += d.toString("latin1")));
    sock.on("close", () => done(performance.now() - t0));
    sock.on("error", () => {}); // a reset closes too
  });
}

describe("the plain port refuses untrusted addresses at accept", () => {
  test("an untrusted connection with a partial head is closed at once, answered 403 without being read", async () => {
    for (const from of FLOODERS) {
      const { ms, got } = await closedAfter(from, PARTIAL_HEAD);
      expect(ms).not.toBeNull(); // before the fix: held until Bun's header timeout (~10 s), then closed unanswered
      expect(ms!).toBeLessThan(250);
      if (got) expect(got).toStartWith("HTTP/1.1 403");
    }
    // Nothing sent at all: closed as well (no wait for a first byte).
    const silent = await closedAfter(FLOODERS[0]!, "");
    expect(silent.ms).not.toBeNull();
    expect(silent.ms!).toBeLessThan(250);
  });

  test("a device keeps checking in over TLS while 2,400 untrusted connections churn, and the gateway's open files stay few", async () => {
    const before = openFiles();
    let stop = false;
    let opened = 0;
    const live = new Set<Socket>();
    // Each flooder keeps PER connections trying, reconnecting whenever one is closed (as the reviewer's did).
    const PER = 800;
    const reconnect = (from: string) => {
      if (stop) return;
      const sock = connect({ host: "127.0.0.1", port: plainPort, localAddress: from }, () => sock.write(PARTIAL_HEAD));
      opened++;
      live.add(sock);
      sock.on("error", () => {});
      sock.on("close", () => {
        live.delete(sock);
        setTimeout(() => reconnect(from), 1);
      });
    };
    for (const from of FLOODERS) for (let i = 0; i < PER; i++) reconnect(from);
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, openFiles())), 50);
    try {
      const checkins: number[] = [];
      const until = Date.now() + 4000;
      while (Date.now() < until) {
        const t0 = performance.now();
        const res = await dev.fetch(`${gw.url}/device`, { signal: AbortSignal.timeout(5000) });
        expect(res.status).toBe(200);
        await res.arrayBuffer();
        checkins.push(performance.now() - t0);
        await Bun.sleep(100);
      }
      expect(opened).toBeGreaterThan(2400); // the flood churned: closed connections came back
      expect(checkins.length).toBeGreaterThanOrEqual(5);
      expect(Math.max(...checkins)).toBeLessThan(1500);
      // Refused at accept, the flood holds next to none of the gateway's descriptors (before the fix: one per connection).
      expect(peak - before).toBeLessThan(300);
    } finally {
      stop = true;
      clearInterval(sampler);
      for (const s of live) s.destroy();
    }
  }, 60_000);

  test("the trusted proxy is still served, its forwarded certificate honoured", async () => {
    const get = `GET /device HTTP/1.1\r\nhost: gw\r\nx-client-cert: ${encodeURIComponent(dev.cert)}\r\nconnection: close\r\n\r\n`;
    const { ms, got } = await closedAfter(PROXY, get);
    expect(ms).not.toBeNull();
    expect(got).toStartWith("HTTP/1.1 200");
    expect(JSON.parse(got.split("\r\n\r\n")[1]!).uuid).toBe(dev.uuid);
  });
});
