/**
 * `gateway serve --proxy-listen`: a TLS-terminating proxy talks plain HTTP to the gateway
 * (deploy/haproxy/gateway-plain.cfg over TCP, deploy/nginx/gateway-plain.conf over a unix
 * socket). Through each, a device registers, is known by its forwarded certificate, posts events
 * and gets push; a held push request takes its share of the connections and is let go when the
 * device goes away. The plain port answers nobody but the trusted proxy: a client from another
 * address is refused unread, even with a genuine certificate in the header, and a header a client
 * sends through the proxy is stripped, the gateway's default `x-client-cert` as well. The unix
 * socket is created 0660: the proxy gets in through the socket's group. The listener has a cap of
 * its own (`--max-connections` busy connections; past it 503 and the connection closed), and
 * /metrics counts its busy connections and refusals beside the TLS port's connections.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect, type Socket } from "node:net";
import { chmodSync, chownSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { CHECKIN_LIST_MAX_BYTES, CHECKIN_LIST_MAX_ITEMS } from "../../lib/api/index.ts";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { DeviceClient } from "../../fioup/device-client.ts";
import { x509 } from "../../lib/x509/eager.ts";
import { metricSample, startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { startHaproxy, startNginx, type ProxyHandle } from "../harness/proxies.ts";
import { exchange } from "../harness/resumable-tls.ts";
import { freePort, tempDir, until } from "../harness/tmp.ts";
import { post, tlsFetch } from "./_client.ts";
import { anEvent } from "./_fixture.ts";
import { registerDevice, type TlsDevice } from "./_register.ts";

const stops: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const s of stops.reverse()) await s();
}, 60_000);

const proxyArgs = (publicPort: number, listen: string) => [
  "--public-url", `https://127.0.0.1:${publicPort}`,
  "--trust-proxy", "127.0.0.1",
  "--client-cert-header", "x-ssl-client-cert",
  "--proxy-listen", listen,
];

/** The device's certificate as HAProxy forwards it: one line of base64 DER. */
const derHeader = (dev: TlsDevice) => Buffer.from(new x509.X509Certificate(dev.cert).rawData).toString("base64");

async function timestampVersion(dev: TlsDevice, url: string): Promise<number> {
  const res = await dev.fetch(`${url}/repo/timestamp.json`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { signed: { version: number } }).signed.version;
}

let targetSeq = 0;
/** A new signed targets version (a publish), through the gateway's own TLS port. */
async function publish(gw: GatewayHandle) {
  const v = String(100 + ++targetSeq);
  const uri = `${gw.host}/main/web@sha256:${"c".repeat(64)}`;
  const res = await gw.adminFetch(
    "/admin/targets",
    post({ targets: { [`amd64-linux-${v}`]: { length: 0, hashes: { sha256: EMPTY_SHA256 }, custom: { version: v, hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { web: { uri } } } } } }),
  );
  expect(res.status).toBeLessThan(300);
}

/** Whether `p` is still pending after `ms`. */
const pendingAfter = (p: Promise<unknown>, ms: number) => Promise.race([p.then(() => false, () => false), Bun.sleep(ms).then(() => true)]);

/** One raw HTTP/1.1 exchange from `localAddress`: the answer's status line and body, and whether the server closed the connection (within 5 s). */
function raw(port: number, localAddress: string, request: string): Promise<{ status: number; body: string; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    let got = "";
    const sock = connect({ host: "127.0.0.1", port, localAddress }, () => sock.write(request));
    const done = (closedByServer: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      const [head = "", body = ""] = got.split("\r\n\r\n");
      resolve({ status: Number(head.split(" ")[1]), body, closedByServer });
    };
    const timer = setTimeout(() => done(false), 5000);
    sock.on("data", (d) => (got += d.toString("latin1")));
    sock.on("end", () => done(true));
    sock.on("error", reject);
  });
}

/** A connection from the proxy's address whose request stays in flight: its head sent, its body not. */
function stuckUpload(port: number, head: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: "127.0.0.1", port }, () => sock.write(head + "["));
    sock.on("error", reject);
    sock.on("connect", () => resolve(sock));
  });
}

describe("the plain listener's own cap and its connections in /metrics", () => {
  const CAP = 4;
  let gw: GatewayHandle;
  let plainPort: number;
  let dev: TlsDevice;
  beforeAll(async () => {
    plainPort = await freePort();
    gw = await startGateway({ args: ["--trust-proxy", "127.0.0.1", "--proxy-listen", `127.0.0.1:${plainPort}`, "--max-connections", String(CAP)] });
    stops.push(() => gw.stop());
    dev = await registerDevice(gw.url, gw.adminToken, gw.caPem);
  });

  test("at most --max-connections of the proxy's connections are busy here: the next request is answered 503 and closed, counted; the slots come back", async () => {
    const get = `GET /device HTTP/1.1\r\nhost: gw\r\nx-client-cert: ${encodeURIComponent(dev.cert)}\r\nconnection: close\r\n\r\n`;
    expect((await raw(plainPort, "127.0.0.1", get)).status).toBe(200);
    expect(await metricSample(gw, "gateway_proxy_connections_busy")).toBe(0); // scraped on the TLS port
    expect(await metricSample(gw, "gateway_connections_open")).toBeGreaterThanOrEqual(0); // beside the TLS port's
    // CAP uploads from the proxy's address that never finish: each keeps its connection busy.
    const upload = `POST /events HTTP/1.1\r\nhost: gw\r\nx-client-cert: ${encodeURIComponent(dev.cert)}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n`;
    const stuck = await Promise.all(Array.from({ length: CAP }, () => stuckUpload(plainPort, upload)));
    try {
      await until(`the ${CAP} stuck uploads busy (gateway_proxy_connections_busy)`, () => metricSample(gw, "gateway_proxy_connections_busy"), (n) => n >= CAP, 5000);
      expect(await metricSample(gw, "gateway_proxy_connections_busy")).toBe(CAP);
      const refused = await raw(plainPort, "127.0.0.1", get);
      expect(refused.status).toBe(503);
      expect(JSON.parse(refused.body).error).toContain("--max-connections");
      expect(refused.closedByServer).toBe(true);
      expect(await metricSample(gw, "gateway_proxy_connections_capped_total")).toBe(1);
      // The proxy's health check still passes at the cap (HTTP/1.0 without a Host header, as HAProxy sends it): busy, not down.
      expect((await raw(plainPort, "127.0.0.1", "GET /healthz HTTP/1.0\r\n\r\n")).status).toBe(200);
      expect(await metricSample(gw, "gateway_proxy_connections_capped_total")).toBe(1);
    } finally {
      for (const s of stuck) s.destroy();
    }
    // The proxy gave up on the uploads: their slots are free again.
    await until("the given-up uploads' slots free (gateway_proxy_connections_busy)", () => metricSample(gw, "gateway_proxy_connections_busy"), (n) => n === 0, 5000);
    expect(await metricSample(gw, "gateway_proxy_connections_busy")).toBe(0);
    expect((await raw(plainPort, "127.0.0.1", get)).status).toBe(200);
    expect(await metricSample(gw, "gateway_proxy_connections_capped_total")).toBe(1);
  });
});

describe("HAProxy with a plain-HTTP hop (deploy/haproxy/gateway-plain.cfg)", () => {
  let gw: GatewayHandle;
  let proxy: ProxyHandle;
  let plainPort: number;
  let dev: TlsDevice;
  beforeAll(async () => {
    const proxyPort = await freePort();
    plainPort = await freePort();
    gw = await startGateway({ args: proxyArgs(proxyPort, `127.0.0.1:${plainPort}`) });
    stops.push(() => gw.stop());
    proxy = await startHaproxy({ file: "gateway-plain.cfg", dataDir: gw.dataDir, replicas: [`127.0.0.1:${plainPort}`], port: proxyPort });
    stops.push(() => proxy.stop());
    dev = await registerDevice(proxy.url, gw.adminToken, gw.caPem);
  });

  test("a device registered through the proxy is known by its certificate, posts events and is told of a publish by push", async () => {
    const me = await dev.fetch(`${proxy.url}/device`);
    expect(me.status).toBe(200);
    expect(((await me.json()) as { uuid: string }).uuid).toBe(dev.uuid);
    expect((await dev.fetch(`${proxy.url}/events`, post([anEvent(`plain-${dev.uuid}`)]))).status).toBe(200);
    const before = await timestampVersion(dev, proxy.url);

    const wait = dev.fetch(`${proxy.url}/repo/wait?after=${before}&timeout=30`);
    expect(await pendingAfter(wait, 700)).toBe(true); // held: nothing new yet
    const published = Date.now();
    await publish(gw);
    const told = await wait;
    expect(told.status).toBe(200);
    expect(((await told.json()) as { version: number }).version).toBeGreaterThan(before);
    expect(Date.now() - published).toBeLessThan(5000);
    expect(await timestampVersion(dev, proxy.url)).toBeGreaterThan(before);
  });

  test("a device's request head may be up to about 7 KB (tune.bufsize 8192): over it HAProxy answers 400 and the next request is served", async () => {
    // A device's own head as fioup sends it, padded to `bytes` with app names in x-ats-dockerapps
    // (the header that grows with the apps a device runs); HAProxy adds X-SSL-Client-Cert (about
    // 650 B) to it on the way in. Measured on HAProxy 2.6.12: 7,081 B pass with 2 headers, 7,005 B with 21.
    const id = { ca: gw.caPem, cert: dev.cert, key: dev.key };
    const ask = async (bytes: number) => {
      const fixed = `GET /device HTTP/1.1\r\nhost: 127.0.0.1:${proxy.port}\r\nconnection: close\r\nuser-agent: fioup/1\r\nx-ats-tags: main\r\nx-ats-dockerapps: \r\n\r\n`;
      let apps = Array.from({ length: Math.ceil((bytes - fixed.length) / 24) }, (_, i) => `app-${String(i).padStart(3, "0")}-collector-agent`).join(",");
      apps = apps.slice(0, bytes - fixed.length);
      const headers = { "user-agent": "fioup/1", "x-ats-tags": "main", "x-ats-dockerapps": apps };
      expect(fixed.length + apps.length).toBe(bytes);
      return (await exchange("127.0.0.1", proxy.port, id, [{ method: "GET", path: "/device", headers }])).responses[0]!;
    };
    const under = await ask(6990);
    expect(under.status).toBe(200);
    expect(JSON.parse(under.body).uuid).toBe(dev.uuid); // the certificate header still fitted in
    for (const bytes of [7200, 12_000]) {
      const over = await ask(bytes);
      expect(`${bytes} B: ${over.status}`).toBe(`${bytes} B: 400`);
      expect(over.body).toContain("400 Bad request"); // HAProxy's own page: the gateway never saw it
      const next = await ask(300);
      expect(next.status).toBe(200);
      expect(JSON.parse(next.body).uuid).toBe(dev.uuid);
    }
  });

  test("fioup's own client with 300 apps and 40 long tags checks in through it: its lists are cut to what the gateway keeps", async () => {
    const apps = Array.from({ length: 300 }, (_, i) => `app-${String(i).padStart(3, "0")}-collector-agent`);
    const tags = Array.from({ length: 40 }, (_, i) => `tag-${i}-`.padEnd(128, "x"));
    const client = new DeviceClient(proxy.url, { ca: gw.caPem, cert: dev.cert, key: dev.key }, { tags, apps, target: "amd64-linux-1" });
    const res = await client.fetch("/repo/timestamp.json");
    expect(res.status).toBe(200); // uncut, these lists make a 12.7 KB head: HAProxy's 400 on every check-in
    const sent = client.headers();
    const sentApps = sent.get("x-ats-dockerapps")!.split(",");
    expect(sentApps).toEqual(apps.slice(0, CHECKIN_LIST_MAX_ITEMS));
    expect(Buffer.byteLength(sent.get("x-ats-tags")!)).toBeLessThanOrEqual(CHECKIN_LIST_MAX_BYTES);
    expect(sent.get("x-ats-tags")!.split(",")).toEqual(tags.slice(0, sent.get("x-ats-tags")!.split(",").length));
  });

  test("a certificate header a client sends through the proxy is stripped", async () => {
    // No client certificate of its own, the device's certificate in the header (both spellings of the name).
    for (const name of ["X-SSL-Client-Cert", "x-ssl-client-cert"]) {
      const res = await tlsFetch({ ca: gw.caPem })(`${proxy.url}/device`, { headers: { [name]: derHeader(dev) }, keepalive: false });
      expect(res.status).toBe(401);
    }
  });

  test("the plain port refuses a client that is not a trusted proxy, unread, even with a genuine certificate header", async () => {
    const get = `GET /device HTTP/1.1\r\nhost: gw\r\nx-ssl-client-cert: ${derHeader(dev)}\r\n\r\n`;
    // From 127.0.0.1, a trusted proxy, this request is the device: the header is all the identity there is.
    const trusted = await raw(plainPort, "127.0.0.1", get.replace("\r\n\r\n", "\r\nconnection: close\r\n\r\n"));
    expect(trusted.status).toBe(200);
    expect(JSON.parse(trusted.body).uuid).toBe(dev.uuid);
    // From 127.0.0.2 the same bytes are refused, and the connection closed.
    const untrusted = await raw(plainPort, "127.0.0.2", get);
    expect(untrusted.status).toBe(403);
    expect(JSON.parse(untrusted.body).error).toContain("127.0.0.2 is not a trusted proxy");
    expect(untrusted.closedByServer).toBe(true);
    // A body is never read: the answer comes while the 10 MB it announces are still unsent.
    const upload = await raw(plainPort, "127.0.0.2", `POST /events HTTP/1.1\r\nhost: gw\r\nx-ssl-client-cert: ${derHeader(dev)}\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\n\r\n[`);
    expect(upload.status).toBe(403);
    expect(upload.closedByServer).toBe(true);
  });

  test("a device request without a certificate is answered 401 before its body is read", async () => {
    const upload = await raw(plainPort, "127.0.0.1", `POST /events HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\n\r\n[`);
    expect(upload.status).toBe(401);
    expect(upload.closedByServer).toBe(true);
  });
});

describe("a gateway left with the default certificate header (x-client-cert) behind the shipped plain-hop configs", () => {
  let gw: GatewayHandle;
  let plainPort: number;
  let dev: TlsDevice;
  const proxies: [string, ProxyHandle][] = [];
  beforeAll(async () => {
    plainPort = await freePort();
    // No --client-cert-header: the operator forgot `x-ssl-client-cert`, so the gateway reads x-client-cert.
    gw = await startGateway({ args: ["--trust-proxy", "127.0.0.1", "--proxy-listen", `127.0.0.1:${plainPort}`] });
    stops.push(() => gw.stop());
    dev = await registerDevice(gw.url, gw.adminToken, gw.caPem);
    const haproxy = await startHaproxy({ file: "gateway-plain.cfg", dataDir: gw.dataDir, replicas: [`127.0.0.1:${plainPort}`] });
    stops.push(() => haproxy.stop());
    const nginx = await startNginx({ file: "gateway-plain.conf", dataDir: gw.dataDir, replicas: [`127.0.0.1:${plainPort}`] });
    stops.push(() => nginx.stop());
    proxies.push(["HAProxy", haproxy], ["nginx", nginx]);
  });

  test("a client's own x-client-cert header (another device's certificate) does not pass the proxy", async () => {
    const forged = encodeURIComponent(dev.cert);
    // Straight from the proxy's address the header is the device: what a client could be if it passed.
    const direct = await raw(plainPort, "127.0.0.1", `GET /device HTTP/1.1\r\nhost: gw\r\nx-client-cert: ${forged}\r\nconnection: close\r\n\r\n`);
    expect(direct.status).toBe(200);
    expect(JSON.parse(direct.body).uuid).toBe(dev.uuid);
    for (const [name, proxy] of proxies) {
      for (const header of ["X-Client-Cert", "x-client-cert"]) {
        const res = await tlsFetch({ ca: gw.caPem })(`${proxy.url}/device`, { headers: { [header]: forged }, keepalive: false });
        expect(`${name} ${header}: ${res.status}`).toBe(`${name} ${header}: 401`);
      }
    }
  });

  test("its devices get 401, and the gateway says once which --client-cert-header to give; a header it cannot read is said once too", async () => {
    const [, haproxy] = proxies[0]!;
    for (let i = 0; i < 3; i++) expect((await dev.fetch(`${haproxy.url}/device`)).status).toBe(401);
    const log = () => readFileSync(gw.logFile, "utf8");
    const hint = "gateway: the proxy forwards a client certificate in x-ssl-client-cert, but this gateway reads x-client-cert: its devices get 401. Give --client-cert-header x-ssl-client-cert";
    await until("the hint in the gateway's log", log, (l) => l.includes(hint), 5000, 50);
    expect(log().split(hint).length - 1).toBe(1);
    // A value in the header read that is no certificate (a proxy sending another format).
    const garbled = await raw(plainPort, "127.0.0.1", `GET /device HTTP/1.1\r\nhost: gw\r\nx-client-cert: not-a-certificate\r\nconnection: close\r\n\r\n`);
    expect(garbled.status).toBe(401);
    await until("the refusal in the gateway's log", log, (l) => l.includes("gateway: refused a client certificate the proxy forwarded: it is neither URL-encoded PEM (nginx) nor base64 DER (HAProxy)"), 5000, 50);
  });
});

describe("nginx with a plain-HTTP hop over a unix socket (deploy/nginx/gateway-plain.conf)", () => {
  let gw: GatewayHandle;
  let proxy: ProxyHandle;
  let dev: TlsDevice;
  beforeAll(async () => {
    const proxyPort = await freePort();
    const socket = join(await tempDir("plain-sock-"), "proxy.sock");
    // --max-connections 2: held push requests may take 90% of it, one.
    gw = await startGateway({ args: [...proxyArgs(proxyPort, `unix:${socket}`), "--max-connections", "2"] });
    stops.push(() => gw.stop());
    // The gateway makes the socket 0660 whatever its umask: owner and group only.
    expect((statSync(socket).mode & 0o777).toString(8)).toBe("660");
    // nginx's workers run as nobody:nogroup here (no `user` line): let them in as an operator
    // would, through the socket's group and a directory they may enter (others: no access).
    const nogroup = Number(/^nogroup:[^:]*:([0-9]+):/m.exec(readFileSync("/etc/group", "utf8"))![1]);
    chmodSync(dirname(socket), 0o711);
    chownSync(socket, process.getuid!(), nogroup);
    proxy = await startNginx({ file: "gateway-plain.conf", dataDir: gw.dataDir, replicas: [`unix:${socket}`], port: proxyPort });
    stops.push(() => proxy.stop());
    dev = await registerDevice(proxy.url, gw.adminToken, gw.caPem);
  });

  test("a device checks in through nginx; a held push takes its share of the connections and is let go when the device leaves", async () => {
    expect((await dev.fetch(`${proxy.url}/events`, post([anEvent(`unix-${dev.uuid}`)]))).status).toBe(200);
    const after = await timestampVersion(dev, proxy.url);
    const waitUrl = `${proxy.url}/repo/wait?after=${after}&timeout=30`;

    const first = new AbortController();
    const held = dev.fetch(waitUrl, { signal: first.signal });
    held.catch(() => {});
    expect(await pendingAfter(held, 700)).toBe(true);
    // The one slot for held requests is taken: a second device is told to poll at once.
    const second = await dev.fetch(waitUrl);
    expect(second.status).toBe(503);

    // The device goes away: nginx closes its request to the gateway, which lets the slot go.
    first.abort();
    // A try answers the status it got, or 0 if held (then let go).
    const tryWait = async () => {
      const ac = new AbortController();
      const again = dev.fetch(waitUrl, { signal: ac.signal });
      again.catch(() => {});
      if (await pendingAfter(again, 500)) {
        ac.abort(); // held: the slot came back (well before the first wait's 30 s)
        return 0;
      }
      return (await again).status;
    };
    expect(await until("a new push wait held once the device left (0), not refused", tryWait, (status) => status === 0, 5000, 200)).toBe(0);
  });
});
