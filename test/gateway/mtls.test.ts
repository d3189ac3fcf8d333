/** The gateway over real TLS: client certificates decide who a request is from. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startGatewayServer, type RunningGateway } from "../../gateway/gateway.ts";
import { createCa, issueProxyCert, signDeviceCsr } from "../../gateway/pki/ca.ts";
import { makeDeviceCsr } from "./_device.ts";
import { anEvent } from "./_fixture.ts";
import { post, tlsFetch } from "./_client.ts";
import { registerDevice, type TlsDevice } from "./_register.ts";

let dir: string;
let gw: RunningGateway;
let ca: string;
let admin: ReturnType<typeof tlsFetch>;

const register = (tags: string[] = ["main"]): Promise<TlsDevice> => registerDevice(gw.url, gw.data.adminToken, ca, tags);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gw-mtls-"));
  gw = await startGatewayServer({ dataDir: dir, listen: "127.0.0.1:0", log: () => {} });
  ca = gw.data.ca.certPem;
  admin = tlsFetch({ ca });
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await rm(dir, { recursive: true, force: true });
}, 120_000);

describe("gateway over mTLS", () => {
  test("a registered device fetches metadata, posts events and reads itself", async () => {
    const d = await register();
    const ts = await d.fetch(`${gw.url}/repo/timestamp.json`, { headers: { "x-ats-target": "amd64-linux-1" } });
    expect(ts.status).toBe(200);
    expect(((await ts.json()) as { signed: { _type: string } }).signed._type).toBe("timestamp");
    const root = await d.fetch(`${gw.url}/repo/1.root.json`);
    expect(root.status).toBe(200);
    const ev = await d.fetch(`${gw.url}/events`, post([anEvent("m1"), anEvent("m2")]));
    expect(ev.status).toBe(200);
    const me = (await (await d.fetch(`${gw.url}/device`)).json()) as Record<string, unknown>;
    expect(me).toMatchObject({ uuid: d.uuid, currentTarget: "amd64-linux-1" });
    expect((await gw.gw.store.listEvents(d.uuid)).map((e) => e.id)).toEqual(["m1", "m2"]);
  }, 60_000);

  test("no certificate, another CA's certificate, an unregistered or a revoked device are refused", async () => {
    expect((await admin(`${gw.url}/repo/timestamp.json`)).status).toBe(401);

    const other = await createCa("main");
    const k = await makeDeviceCsr();
    const foreign = await signDeviceCsr(other, k.csrPem, { uuid: k.uuid, factory: "main" });
    const f = tlsFetch({ ca, cert: foreign.certPem, key: k.keyPem });
    expect((await f(`${gw.url}/repo/timestamp.json`)).status).toBe(401);
    expect((await f(`${gw.url}/events`, post([anEvent("x")]))).status).toBe(401);

    // Signed by our CA, but never registered.
    const k2 = await makeDeviceCsr();
    const stray = await signDeviceCsr(gw.data.ca, k2.csrPem, { uuid: k2.uuid, factory: "main" });
    expect((await tlsFetch({ ca, cert: stray.certPem, key: k2.keyPem })(`${gw.url}/device`)).status).toBe(403);

    const d = await register();
    expect((await d.fetch(`${gw.url}/device`)).status).toBe(200);
    const r = await admin(`${gw.url}/admin/devices/${d.uuid}/revoke`, { method: "POST", headers: { authorization: `Bearer ${gw.data.adminToken}` } });
    expect(r.status).toBe(200);
    expect((await d.fetch(`${gw.url}/device`)).status).toBe(403);
    expect((await d.fetch(`${gw.url}/events`, post([anEvent("after-revoke")]))).status).toBe(403);
  }, 60_000);

  test("device A cannot post or read as device B", async () => {
    const a = await register();
    const b = await register();
    await a.fetch(`${gw.url}/events`, post([anEvent("a-1")]));
    await a.fetch(`${gw.url}/apps-states`, post({ deviceTime: "t", apps: {} }));
    await a.fetch(`${gw.url}/system_info/network`, post({ hostname: "a", mac: "m", local_ipv4: "1.1.1.1" }, "PUT"));
    expect(await gw.gw.store.listEvents(b.uuid)).toEqual([]);
    expect(await gw.gw.store.getAppsStates(b.uuid)).toBeUndefined();
    expect(await gw.gw.store.getSystemInfo(b.uuid)).toEqual({});
    const me = (await (await a.fetch(`${gw.url}/device`)).json()) as { uuid: string };
    expect(me.uuid).toBe(a.uuid);
    expect((await a.fetch(`${gw.url}/admin/devices/${b.uuid}`)).status).toBe(401);
  }, 60_000);

  test("a client-cert header counts only from a trusted address presenting a proxy certificate, and only if our CA issued it", async () => {
    const d = await register();
    const header = { "x-client-cert": encodeURIComponent(d.cert) };
    // Not trusted in this gateway: the header is nobody, with a proxy certificate too.
    expect((await admin(`${gw.url}/device`, { headers: header })).status).toBe(401);
    const gwProxy = await issueProxyCert(gw.data.ca, "proxy");
    expect((await tlsFetch({ ca, cert: gwProxy.certPem, key: gwProxy.keyPem })(`${gw.url}/device`, { headers: header, keepalive: false })).status).toBe(401);
    // A gateway trusting 127.0.0.1 as its proxy (the header's sender), where no device has connected yet.
    const proxiedDir = await mkdtemp(join(tmpdir(), "gw-mtls-proxied-"));
    const proxied = await startGatewayServer({ dataDir: proxiedDir, listen: "127.0.0.1:0", trustProxy: "127.0.0.1/32", log: () => {} });
    try {
      const pCa = proxied.data.ca.certPem;
      const p = await registerDevice(proxied.url, proxied.data.adminToken, pCa);
      const q = await registerDevice(proxied.url, proxied.data.adminToken, pCa);
      const pHeader = { "x-client-cert": encodeURIComponent(p.cert) };
      // From the trusted address but without a proxy certificate (a client a TCP-mode proxy passed through): nobody.
      expect((await tlsFetch({ ca: pCa })(`${proxied.url}/device`, { headers: pHeader, keepalive: false })).status).toBe(401);
      // With its proxy certificate: the header is the device.
      const cert = await issueProxyCert(proxied.data.ca, "haproxy1");
      const asProxy = tlsFetch({ ca: pCa, cert: cert.certPem, key: cert.keyPem });
      const viaProxy = await asProxy(`${proxied.url}/device`, { headers: pHeader, keepalive: false });
      expect(viaProxy.status).toBe(200);
      expect(((await viaProxy.json()) as { uuid: string }).uuid).toBe(p.uuid);
      // A proxy certificate is no device: without a header it is refused as one.
      expect((await asProxy(`${proxied.url}/device`, { keepalive: false })).status).toBe(401);
      // A device's certificate does not make its sender a proxy: q stays q, whoever the header names.
      const asQ = await q.fetch(`${proxied.url}/device`, { headers: pHeader });
      expect(((await asQ.json()) as { uuid: string }).uuid).toBe(q.uuid);
      // A proxy certificate of another factory's CA fails the handshake's verification: the header is not believed.
      const otherCa = await createCa("main");
      const foreignProxy = await issueProxyCert(otherCa, "haproxy1");
      const fp = await tlsFetch({ ca: pCa, cert: foreignProxy.certPem, key: foreignProxy.keyPem })(`${proxied.url}/device`, { headers: pHeader, keepalive: false }).then(
        (r) => r.status,
        () => "handshake failed",
      );
      expect([401, "handshake failed"]).toContain(fp);
      // A certificate in the header that another CA issued: refused, from the proxy too.
      const k = await makeDeviceCsr(p.uuid);
      const forged = await signDeviceCsr(otherCa, k.csrPem, { uuid: p.uuid, factory: "main" });
      expect((await asProxy(`${proxied.url}/device`, { headers: { "x-client-cert": encodeURIComponent(forged.certPem) }, keepalive: false })).status).toBe(401);
      // A device connecting from the proxy's address with its own certificate changes nothing for the proxy.
      expect((await p.fetch(`${proxied.url}/device`)).status).toBe(200);
      expect((await asProxy(`${proxied.url}/device`, { headers: pHeader, keepalive: false })).status).toBe(200);
    } finally {
      await proxied.stop();
      await rm(proxiedDir, { recursive: true, force: true });
    }
  }, 60_000);

  test("the registry lets a device pull only its factory's repositories", async () => {
    const d = await register();
    expect((await d.fetch(`${gw.url}/v2/main/app/manifests/latest`)).status).toBe(404);
    expect((await d.fetch(`${gw.url}/v2/other/app/manifests/latest`)).status).toBe(403);
    const push = await d.fetch(`${gw.url}/v2/main/app/blobs/uploads/`, { method: "POST" });
    expect(push.status).toBe(403);
    const basic = "Basic " + Buffer.from(`ci:${gw.data.adminToken}`).toString("base64");
    expect((await admin(`${gw.url}/v2/`, { headers: { authorization: basic } })).status).toBe(200);
    expect((await admin(`${gw.url}/v2/other/app/manifests/latest`)).status).toBe(401);
  }, 60_000);

  test("GET /token issues registry tokens: the admin may push, a device only pulls its factory", async () => {
    const basic = "Basic " + Buffer.from(`ci:${gw.data.adminToken}`).toString("base64");
    const adminTok = (await (await admin(`${gw.url}/token?scope=repository:main/app:pull,push`, { headers: { authorization: basic } })).json()) as { token: string };
    const up = await admin(`${gw.url}/v2/main/app/blobs/uploads/`, { method: "POST", headers: { authorization: `Bearer ${adminTok.token}` } });
    expect(up.status).toBe(202);
    const d = await register();
    const devTok = (await (await d.fetch(`${gw.url}/token?scope=repository:main/app:pull,push&scope=repository:other/app:pull`)).json()) as { token: string };
    const claims = JSON.parse(Buffer.from(devTok.token.split(".")[0]!, "base64url").toString()) as { access: { name: string; actions: string[] }[] };
    expect(claims.access).toEqual([
      { type: "repository", name: "main/app", actions: ["pull"] },
      { type: "repository", name: "other/app", actions: [] },
    ] as never);
    expect((await admin(`${gw.url}/token?scope=repository:main/app:pull`)).status).toBe(401);
    expect((await admin(`${gw.url}/token`, { headers: { authorization: "Basic " + Buffer.from("ci:wrong").toString("base64") } })).status).toBe(401);
  }, 60_000);

  test("a large registry upload streams through the transport intact", async () => {
    const size = 24 * 1024 * 1024;
    const blob = new Uint8Array(size);
    for (let i = 0; i < size; i += 4096) blob[i] = i % 251;
    const digest = "sha256:" + new Bun.CryptoHasher("sha256").update(blob).digest("hex");
    const auth = { authorization: `Bearer ${gw.data.adminToken}` };
    const start = await admin(`${gw.url}/v2/main/big/blobs/uploads/`, { method: "POST", headers: auth });
    expect(start.status).toBe(202);
    const loc = new URL(start.headers.get("location")!, gw.url);
    loc.searchParams.set("digest", digest);
    // Streamed request body, in 1 MiB chunks.
    let off = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(ctrl) {
        if (off >= size) return ctrl.close();
        ctrl.enqueue(blob.subarray(off, (off += 1 << 20)));
      },
    });
    const put = await admin(loc.toString(), { method: "PUT", headers: { ...auth, "content-type": "application/octet-stream" }, body, duplex: "half" } as RequestInit);
    expect(put.status).toBe(201);
    const head = await admin(`${gw.url}/v2/main/big/blobs/${digest}`, { method: "HEAD", headers: auth });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(size));
    const got = new Uint8Array(await (await admin(`${gw.url}/v2/main/big/blobs/${digest}`, { headers: auth })).arrayBuffer());
    expect(got.byteLength).toBe(size);
    expect("sha256:" + new Bun.CryptoHasher("sha256").update(got).digest("hex")).toBe(digest);
  }, 60_000);
  test("without credentials, device, admin, registry and registration requests are answered 401 before their body is read", async () => {
    /** Sends only a head announcing a 64 KiB body (small enough to be read whole before the handler runs) over raw TLS; resolves with the answer and how long it took. */
    const headOnly = (head: string) =>
      new Promise<{ text: string; ms: number }>((resolve, reject) => {
        const t0 = performance.now();
        const sock = connect({ host: "127.0.0.1", port: Number(new URL(gw.url).port), ca });
        let text = "";
        sock.on("secureConnect", () => sock.write(`${head}Host: x\r\nContent-Type: application/json\r\nContent-Length: 65536\r\n\r\n`));
        sock.on("data", (d: Buffer) => (text += d.toString("latin1")));
        sock.on("close", () => resolve({ text, ms: performance.now() - t0 }));
        sock.on("error", reject);
        setTimeout(() => sock.destroy(), 5000);
      });
    for (const head of ["POST /events HTTP/1.1\r\n", "PUT /system_info HTTP/1.1\r\n", "POST /admin/targets HTTP/1.1\r\n", "PATCH /v2/main/app/blobs/uploads/x HTTP/1.1\r\n", "POST /devices HTTP/1.1\r\n"]) {
      const r = await headOnly(head);
      expect({ head, status: r.text.slice(0, 12) }).toEqual({ head, status: "HTTP/1.1 401" });
      expect(r.text).toContain("connection: close");
      expect(r.ms).toBeLessThan(2000); // answered at once, not after a body or a deadline
    }
  }, 60_000);

  test("a path with a dot-segment, raw or %-escaped, is refused 400 before admission or routing reads it", async () => {
    /** One GET over raw TLS without a certificate; resolves with the whole answer once the gateway closes. */
    const get = (target: string) =>
      new Promise<string>((resolve, reject) => {
        const sock = connect({ host: "127.0.0.1", port: Number(new URL(gw.url).port), ca });
        let text = "";
        sock.on("secureConnect", () => sock.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
        sock.on("data", (d: Buffer) => (text += d.toString("latin1")));
        sock.on("close", () => resolve(text));
        sock.on("error", reject);
        setTimeout(() => sock.destroy(), 5000);
      });
    // Admission read the raw path (not /ca.pem: a device path, 401) while routing read the resolved one (/ca.pem: 200).
    for (const target of ["/repo/%2e%2e/ca.pem", "/repo/%2E%2e/ca.pem", "/repo/../ca.pem", "/x/%2e%2e/admin/tokens"]) {
      const text = await get(target);
      expect({ target, status: text.slice(0, 12) }).toEqual({ target, status: "HTTP/1.1 400" });
      expect(text).not.toContain("BEGIN CERTIFICATE");
    }
    expect((await get("/ca.pem")).slice(0, 12)).toBe("HTTP/1.1 200");
  }, 60_000);
});
