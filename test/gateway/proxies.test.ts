/**
 * The example load-balancer configs in deploy/, run for real in front of the gateway: HAProxy and
 * nginx terminating device TLS and forwarding the client certificate (HAProxy as base64 DER,
 * nginx as URL-encoded PEM), and HAProxy in TCP mode passing TLS through to the gateway. Through
 * each, a device registers, is recognised by its certificate, posts events and reads TUF metadata;
 * a made-up certificate header never gets through (the gateway's default `x-client-cert` too,
 * for an operator who left out --client-cert-header), and a certificate of another CA fails the
 * handshake. The TLS-hop proxies present the proxy certificate `gateway proxy-cert` issued them;
 * one that does not, and HAProxy in TCP mode wrongly given --trust-proxy, get no forwarded header
 * believed, from the first request on.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { readDataDirCa } from "../../gateway/data-dir.ts";
import { createCa, issueProxyCert, signDeviceCsr } from "../../gateway/pki/ca.ts";
import { x509 } from "../../lib/x509/eager.ts";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { metricSample, startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { startHaproxy, startNginx, type ProxyHandle } from "../harness/proxies.ts";
import { freePort, until } from "../harness/tmp.ts";
import { post, tlsFetch } from "./_client.ts";
import { makeDeviceCsr } from "./_device.ts";
import { anEvent } from "./_fixture.ts";
import { registerDevice } from "./_register.ts";

const stops: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const s of stops.reverse()) await s();
}, 60_000);

let gw: GatewayHandle;
let proxyPort: number;
beforeAll(async () => {
  proxyPort = await freePort();
  gw = await startGateway({
    args: ["--public-url", `https://127.0.0.1:${proxyPort}`, "--trust-proxy", "127.0.0.1", "--client-cert-header", "x-ssl-client-cert"],
  });
  stops.push(() => gw.stop());
});

/** Registers a device of `through` (default the first gateway) at `url` with a fresh registration token; returns its mTLS fetch. */
async function registerThrough(url: string, through: GatewayHandle = gw) {
  const tokenRes = await through.adminFetch("/admin/tokens", post({ tags: ["main"] }));
  expect(tokenRes.status).toBeLessThan(300);
  const { token } = (await tokenRes.json()) as { token: string };
  const k = await makeDeviceCsr();
  const reg = await tlsFetch({ ca: through.caPem })(`${url}/devices`, {
    ...post({ name: "dev", uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux" }),
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
  });
  expect(reg.status).toBe(201);
  const { certificate } = (await reg.json()) as RegistrationResponse;
  return { uuid: k.uuid, cert: certificate, key: k.keyPem, fetch: tlsFetch({ ca: through.caPem, cert: certificate, key: k.keyPem }) };
}

async function deviceWorksThrough(url: string) {
  const dev = await registerThrough(url);
  const me = await dev.fetch(`${url}/device`);
  expect(me.status).toBe(200);
  expect(((await me.json()) as { uuid: string }).uuid).toBe(dev.uuid);
  expect((await dev.fetch(`${url}/events`, post([anEvent(`through-${dev.uuid}`)]))).status).toBe(200);
  expect((await dev.fetch(`${url}/repo/timestamp.json`)).status).toBe(200);
  return dev;
}

async function spoofRefused(url: string, header: string) {
  // No client certificate, but a certificate header claiming to be the device.
  // A connection of its own (keepalive off), so it cannot ride on a device's pooled TLS session.
  const res = await tlsFetch({ ca: gw.caPem })(`${url}/device`, { headers: { "x-ssl-client-cert": header }, keepalive: false });
  expect(res.status).toBe(401);
}

async function foreignCertRefused(url: string) {
  const other = await createCa("main");
  const k = await makeDeviceCsr();
  const { certPem } = await signDeviceCsr(other, k.csrPem, { uuid: k.uuid, factory: "main" });
  const outcome = await tlsFetch({ ca: gw.caPem, cert: certPem, key: k.keyPem })(`${url}/device`).then(
    (r) => r.status,
    () => "handshake failed",
  );
  expect([400, 401, 403, "handshake failed"]).toContain(outcome);
  expect(outcome).not.toBe(200);
}

describe("HAProxy terminating TLS (deploy/haproxy/gateway.cfg)", () => {
  let proxy: ProxyHandle;
  beforeAll(async () => {
    proxy = await startHaproxy({ dataDir: gw.dataDir, replicas: [gw.host], port: proxyPort });
    stops.push(() => proxy.stop());
  });

  test("a device registers, is known by its certificate (base64 DER header), posts events and reads metadata", async () => {
    await deviceWorksThrough(proxy.url);
  });

  test("a certificate header sent by a client is dropped; a certificate of another CA fails", async () => {
    const dev = await registerThrough(proxy.url);
    await spoofRefused(proxy.url, Buffer.from(new x509.X509Certificate(dev.cert).rawData).toString("base64"));
    await spoofRefused(proxy.url, encodeURIComponent(dev.cert));
    await foreignCertRefused(proxy.url);
  });
});

describe("nginx terminating TLS (deploy/nginx/gateway.conf)", () => {
  let proxy: ProxyHandle;
  beforeAll(async () => {
    proxy = await startNginx({ dataDir: gw.dataDir, replicas: [gw.host], replicaName: "127.0.0.1" });
    stops.push(() => proxy.stop());
  });

  test("a device registers, is known by its certificate (URL-encoded PEM header), posts events and reads metadata", async () => {
    await deviceWorksThrough(proxy.url);
  });

  test("a certificate header sent by a client is replaced; a certificate of another CA fails", async () => {
    const dev = await registerThrough(proxy.url);
    await spoofRefused(proxy.url, encodeURIComponent(dev.cert));
    await foreignCertRefused(proxy.url);
  });
});

describe("the TLS-hop configs in front of a gateway left with the default certificate header (x-client-cert)", () => {
  let plainGw: GatewayHandle;
  let cert: string;
  let uuid: string;
  const proxies: [string, ProxyHandle][] = [];
  beforeAll(async () => {
    const port = await freePort();
    // No --client-cert-header: the operator forgot `x-ssl-client-cert`, so the gateway reads x-client-cert.
    plainGw = await startGateway({ args: ["--public-url", `https://127.0.0.1:${port}`, "--trust-proxy", "127.0.0.1"] });
    stops.push(() => plainGw.stop());
    ({ cert, uuid } = await registerDevice(plainGw.url, plainGw.adminToken, plainGw.caPem));
    const haproxy = await startHaproxy({ dataDir: plainGw.dataDir, replicas: [plainGw.host], port });
    stops.push(() => haproxy.stop());
    const nginx = await startNginx({ dataDir: plainGw.dataDir, replicas: [plainGw.host], replicaName: "127.0.0.1" });
    stops.push(() => nginx.stop());
    proxies.push(["HAProxy", haproxy], ["nginx", nginx]);
  });

  test("a client's own x-client-cert header (another device's certificate) does not pass the proxy", async () => {
    const forged = encodeURIComponent(cert);
    // Sent as the proxy (its address and proxy certificate) the header is the device: what a client would be if it passed.
    const proxyCert = await issueProxyCert(await readDataDirCa(plainGw.dataDir), "test");
    const direct = await tlsFetch({ ca: plainGw.caPem, cert: proxyCert.certPem, key: proxyCert.keyPem })(`${plainGw.url}/device`, { headers: { "x-client-cert": forged }, keepalive: false });
    expect(direct.status).toBe(200);
    expect(((await direct.json()) as { uuid: string }).uuid).toBe(uuid);
    for (const [name, proxy] of proxies) {
      for (const header of ["X-Client-Cert", "x-client-cert"]) {
        const res = await tlsFetch({ ca: plainGw.caPem })(`${proxy.url}/device`, { headers: { [header]: forged }, keepalive: false });
        expect(`${name} ${header}: ${res.status}`).toBe(`${name} ${header}: 401`);
      }
    }
  });
});

/** A gateway started with `args` behind deploy/haproxy/gateway-tcp.cfg (TLS passed through), both stopped after the file. */
async function behindTcpMode(args: string[]) {
  const port = await freePort();
  const gateway = await startGateway({ args: ["--public-url", `https://127.0.0.1:${port}`, ...args] });
  stops.push(() => gateway.stop());
  const proxy = await startHaproxy({ file: "gateway-tcp.cfg", dataDir: gateway.dataDir, replicas: [gateway.host], port });
  stops.push(() => proxy.stop());
  return { gateway, proxy };
}

describe("HAProxy in TCP mode (deploy/haproxy/gateway-tcp.cfg): TLS passes through to the gateway", () => {
  let direct: GatewayHandle;
  let proxy: ProxyHandle;
  beforeAll(async () => {
    // No --trust-proxy: in TCP mode the gateway verifies device certificates itself.
    ({ gateway: direct, proxy } = await behindTcpMode([]));
  });

  test("a device registers and checks in through the passthrough, and a header claims nothing", async () => {
    const dev = await registerThrough(proxy.url, direct);
    expect((await dev.fetch(`${proxy.url}/device`)).status).toBe(200);
    const spoof = await tlsFetch({ ca: direct.caPem })(`${proxy.url}/device`, { headers: { "x-ssl-client-cert": encodeURIComponent(dev.cert) } });
    expect(spoof.status).toBe(401);
  });
});

describe("HAProxy in TCP mode in front of a gateway wrongly given --trust-proxy for it", () => {
  let misset: GatewayHandle;
  let proxy: ProxyHandle;
  beforeAll(async () => {
    // The mistake: the walkthrough's flags for a proxy that terminates TLS, kept for one that passes it through.
    ({ gateway: misset, proxy } = await behindTcpMode(["--trust-proxy", "127.0.0.1", "--client-cert-header", "x-ssl-client-cert", "--max-connections-per-address", "4"]));
  });

  test("clients without a certificate through it are held to the per-address cap: a trusted address earns no exemption on the TLS port", async () => {
    const before = await metricSample(misset, "gateway_connections_capped_total");
    const socks = await Promise.all(
      Array.from({ length: 7 }, () => new Promise<TLSSocket>((ok, fail) => {
        const s = tlsConnect({ host: "127.0.0.1", port: Number(new URL(proxy.url).port), ca: misset.caPem }, () => ok(s));
        s.on("error", fail);
      })),
    );
    try {
      await until("the oldest closed past the cap of 4", () => metricSample(misset, "gateway_connections_capped_total"), (n) => n - before >= 3, 10_000);
      expect(await metricSample(misset, "gateway_connections_unauthenticated")).toBeLessThanOrEqual(4);
    } finally {
      for (const s of socks) s.destroy();
    }
  });

  test("from the first request after the start, a client without a certificate claiming a device in the header gets 401, and the log says what to change", async () => {
    // The device registered, but none has connected with its certificate since the start.
    const dev = await registerDevice(misset.url, misset.adminToken, misset.caPem);
    // A client of the trusted address without a certificate that sends no header (the registration) is not warned about.
    expect(await Bun.file(misset.logFile).text()).not.toContain("without a proxy certificate");
    // Another client, no certificate, the device's in the header (base64 DER, as HAProxy forwards it).
    const der = Buffer.from(new x509.X509Certificate(dev.cert).rawData).toString("base64");
    const spoof = await tlsFetch({ ca: misset.caPem })(`${proxy.url}/device`, { headers: { "x-ssl-client-cert": der }, keepalive: false });
    expect(spoof.status).toBe(401);
    // The device itself still gets through, by its own certificate.
    expect((await tlsFetch({ ca: misset.caPem, cert: dev.cert, key: dev.key })(`${proxy.url}/device`, { keepalive: false })).status).toBe(200);
    const log = await Bun.file(misset.logFile).text();
    expect(log).toContain("a request came to the TLS port from 127.0.0.1, a --trust-proxy address, with x-ssl-client-cert but without a proxy certificate on its connection: x-ssl-client-cert is not believed from it");
    expect(log).toContain("A proxy that passes TLS through (TCP mode) needs no --trust-proxy: take 127.0.0.1 out of it");
  });
});

describe("a TLS-hop proxy without its proxy certificate (an upgrade left half done)", () => {
  let bare: GatewayHandle;
  const proxies: [string, ProxyHandle][] = [];
  beforeAll(async () => {
    const port = await freePort();
    bare = await startGateway({ args: ["--public-url", `https://127.0.0.1:${port}`, "--trust-proxy", "127.0.0.1", "--client-cert-header", "x-ssl-client-cert"] });
    stops.push(() => bare.stop());
    const haproxy = await startHaproxy({ dataDir: bare.dataDir, replicas: [bare.host], port, proxyCert: false });
    stops.push(() => haproxy.stop());
    const nginx = await startNginx({ dataDir: bare.dataDir, replicas: [bare.host], replicaName: "127.0.0.1", proxyCert: false });
    stops.push(() => nginx.stop());
    proxies.push(["HAProxy", haproxy], ["nginx", nginx]);
  });

  test("its forwarded header is ignored (a device gets 401), and the log names the fix: gateway proxy-cert and the README's section", async () => {
    const dev = await registerDevice(bare.url, bare.adminToken, bare.caPem);
    for (const [name, proxy] of proxies) {
      const res = await tlsFetch({ ca: bare.caPem, cert: dev.cert, key: dev.key })(`${proxy.url}/device`, { keepalive: false });
      expect(`${name}: ${res.status}`).toBe(`${name}: 401`);
    }
    const log = await Bun.file(bare.logFile).text();
    expect(log).toContain("with x-ssl-client-cert but without a proxy certificate on its connection: x-ssl-client-cert is not believed from it");
    expect(log).toContain("issue it with `gateway proxy-cert --data DIR --name NAME --out DIR` and give it to the proxy");
    expect(log).toContain('gateway/README.md says under "Behind a proxy"');
  });

  test("an expired proxy certificate gets the header ignored too, and the log says it expired and what to do", async () => {
    const dev = await registerDevice(bare.url, bare.adminToken, bare.caPem);
    const expired = await issueProxyCert(await readDataDirCa(bare.dataDir), "old", { validDays: -0.5 });
    const res = await tlsFetch({ ca: bare.caPem, cert: expired.certPem, key: expired.keyPem })(`${bare.url}/device`, {
      headers: { "x-ssl-client-cert": encodeURIComponent(dev.cert) },
      keepalive: false,
    });
    expect(res.status).toBe(401);
    const log = await Bun.file(bare.logFile).text();
    expect(log).toContain('gateway: the proxy certificate "old" the proxy at 127.0.0.1 presented on the TLS port did not verify (');
    expect(log).toMatch(/did not verify \([^)]*expired[^)]*\)/i);
    expect(log).toContain("Issue a new one from this gateway's data dir with `gateway proxy-cert");
  });
});
