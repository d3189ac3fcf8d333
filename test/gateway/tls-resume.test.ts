/**
 * TLS session resumption against a real gateway: a resumed connection (no
 * certificate exchanged) is still the device whose certificate the full
 * handshake verified, a revoked device is refused on it, and a session taken
 * from device A makes its holder A, never the device whose certificate it offers.
 * Also through HAProxy terminating TLS (deploy/haproxy/gateway.cfg): it resumes on
 * its side and still forwards the certificate of the resumed session.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeviceClient } from "../../fioup/device-client.ts";
import { startGatewayServer, type RunningGateway } from "../../gateway/gateway.ts";
import { exchange, type RawRequest } from "../harness/resumable-tls.ts";
import { startGateway } from "../harness/gateway.ts";
import { startHaproxy } from "../harness/proxies.ts";
import { freePort } from "../harness/tmp.ts";
import { anEvent } from "./_fixture.ts";
import { registerDevice, type TlsDevice } from "./_register.ts";

let dir: string;
let gw: RunningGateway;
let host: string;
let port: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gw-tls-resume-"));
  gw = await startGatewayServer({ dataDir: dir, listen: "127.0.0.1:0", log: () => {} });
  const u = new URL(gw.url);
  host = u.hostname;
  port = Number(u.port);
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

const register = () => registerDevice(gw.url, gw.data.adminToken, gw.data.ca.certPem);
const id = (d: TlsDevice) => ({ ca: gw.data.ca.certPem, cert: d.cert, key: d.key });
const whoAmI: RawRequest = { method: "GET", path: "/device" };
const uuidOf = (body: string) => (JSON.parse(body) as { uuid: string }).uuid;

describe("TLS session resumption", () => {
  test("a resumed connection is authenticated as the device of the full handshake, and refused once it is revoked", async () => {
    const a = await register();
    const full = await exchange(host, port, id(a), [whoAmI]);
    expect(full.resumed).toBe(false);
    expect(full.responses[0]!.status).toBe(200);
    expect(uuidOf(full.responses[0]!.body)).toBe(a.uuid);
    expect(full.session).toBeDefined();

    const again = await exchange(host, port, id(a), [whoAmI, { method: "POST", path: "/events", headers: { "content-type": "application/json" }, body: JSON.stringify([anEvent("resumed-1")]) }], { session: full.session });
    expect(again.resumed).toBe(true);
    expect(again.responses.map((r) => r.status)).toEqual([200, 200]);
    expect(uuidOf(again.responses[0]!.body)).toBe(a.uuid);
    expect((await gw.gw.store.listEvents(a.uuid)).map((e) => e.id)).toEqual(["resumed-1"]);

    const revoked = await a.fetch(`${gw.url}/admin/devices/${a.uuid}/revoke`, { method: "POST", headers: { authorization: `Bearer ${gw.data.adminToken}` } });
    expect(revoked.status).toBe(200);
    const after = await exchange(host, port, id(a), [whoAmI], { session: again.session });
    expect(after.resumed).toBe(true);
    expect(after.responses[0]!.status).toBe(403);
  }, 20_000);

  test("a session from device A offered with device B's certificate acts as A, never as B", async () => {
    const a = await register();
    const b = await register();
    const sessionA = (await exchange(host, port, id(a), [whoAmI])).session;
    const mixed = await exchange(host, port, id(b), [whoAmI, { method: "POST", path: "/events", headers: { "content-type": "application/json" }, body: JSON.stringify([anEvent("mixed-1")]) }], { session: sessionA });
    expect(mixed.resumed).toBe(true);
    expect(uuidOf(mixed.responses[0]!.body)).toBe(a.uuid);
    expect(await gw.gw.store.listEvents(b.uuid)).toEqual([]);
    expect((await gw.gw.store.listEvents(a.uuid)).map((e) => e.id)).toEqual(["mixed-1"]);
    // B's own session is B.
    const sessionB = (await exchange(host, port, id(b), [whoAmI])).session;
    const own = await exchange(host, port, id(b), [whoAmI], { session: sessionB });
    expect(own.resumed).toBe(true);
    expect(uuidOf(own.responses[0]!.body)).toBe(b.uuid);
  }, 20_000);

  test("fioup's client (Bun fetch) resumes on its next connection in the same process, and /metrics counts it", async () => {
    const d = await register();
    const client = new DeviceClient(gw.url, { cert: d.cert, key: d.key, ca: gw.data.ca.certPem }, { tags: ["main"], apps: [] });
    const counts = () => gw.gw.metrics.connections!() as { handshakes: number; resumed: number };
    const before = counts();
    for (let i = 0; i < 3; i++) {
      // keepalive: false stands for the gateway having closed the idle connection since the last poll.
      const res = await client.fetch("/device", { keepalive: false } as RequestInit);
      expect(res.status).toBe(200);
      expect(uuidOf(await res.text())).toBe(d.uuid);
    }
    const now = counts();
    expect(now.handshakes - before.handshakes).toBe(3);
    expect(now.resumed - before.resumed).toBe(2);
    const metrics = await (await fetch(`${gw.url}/metrics`, { tls: { ca: gw.data.ca.certPem } } as RequestInit)).text();
    expect(metrics).toMatch(/^gateway_tls_resumed_total [1-9]\d*$/m);
  }, 20_000);

  test("through HAProxy (TLS terminated there), a resumed session still forwards the device's certificate, and a revoked device is refused", async () => {
    const proxyPort = await freePort();
    const g = await startGateway({ args: ["--public-url", `https://127.0.0.1:${proxyPort}`, "--trust-proxy", "127.0.0.1", "--client-cert-header", "x-ssl-client-cert"] });
    const proxy = await startHaproxy({ dataDir: g.dataDir, replicas: [g.host], port: proxyPort });
    try {
      const d = await registerDevice(g.url, g.adminToken, g.caPem);
      const me = { ca: g.caPem, cert: d.cert, key: d.key };
      const full = await exchange("127.0.0.1", proxyPort, me, [whoAmI]);
      expect(full.resumed).toBe(false);
      const again = await exchange("127.0.0.1", proxyPort, me, [whoAmI], { session: full.session });
      expect(again.resumed).toBe(true);
      expect(again.responses[0]!.status).toBe(200);
      expect(uuidOf(again.responses[0]!.body)).toBe(d.uuid);
      expect((await g.adminFetch(`/admin/devices/${d.uuid}/revoke`, { method: "POST" })).status).toBe(200);
      const after = await exchange("127.0.0.1", proxyPort, me, [whoAmI], { session: again.session });
      expect(after.resumed).toBe(true);
      expect(after.responses[0]!.status).toBe(403);
    } finally {
      await proxy.stop();
      await g.stop();
    }
  }, 30_000);
});
