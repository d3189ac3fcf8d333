/**
 * Push behind HAProxy (deploy/haproxy/gateway.cfg) while every replica restarts, as an upgrade
 * does: HAProxy answers the device's held wait 503 (no replica to send it to). fioup's daemon
 * took that for "no push here" and slept out its whole poll interval, so the fleet heard of no
 * publish until then, and came back all at once; it now asks again after 1 to 5 s, as after a
 * dropped connection, and hears of the next publish at once.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { DeviceClient } from "../../fioup/device-client.ts";
import { waitForNews } from "../../fioup/push.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { startHaproxy, type ProxyHandle } from "../harness/proxies.ts";
import { freePort, tempDir, until } from "../harness/tmp.ts";
import { post } from "./_client.ts";
import { registerDevice } from "./_register.ts";

let gw: GatewayHandle;
let proxy: ProxyHandle;
let args: string[];
let client: DeviceClient;
let storage: string;

beforeAll(async () => {
  const proxyPort = await freePort();
  args = ["--public-url", `https://127.0.0.1:${proxyPort}`, "--trust-proxy", "127.0.0.1", "--client-cert-header", "x-ssl-client-cert"];
  gw = await startGateway({ args });
  proxy = await startHaproxy({ dataDir: gw.dataDir, replicas: [gw.host], port: proxyPort });
  const device = await registerDevice(gw.url, gw.adminToken, gw.caPem);
  client = new DeviceClient(proxy.url, { cert: device.cert, key: device.key, ca: gw.caPem }, { tags: ["main"], apps: [] });
  // The device's TUF folder; the test writes the timestamp it trusts there.
  storage = await tempDir("walk-push-device-");
  mkdirSync(join(storage, "tuf"));
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  await gw?.stop();
}, 60_000);

test("a device whose wait HAProxy answers 503 (its replica restarting) hears of the next publish at once, not at its next poll", async () => {
  // What the device is answered, wait by wait.
  const statuses: number[] = [];
  const watched = Object.assign(Object.create(client) as DeviceClient, {
    fetch: async (...a: Parameters<DeviceClient["fetch"]>) => {
      const res = await client.fetch(...a);
      statuses.push(res.status);
      return res;
    },
  });
  // The device trusts the newest timestamp, so only a publish is news.
  writeFileSync(join(storage, "tuf", "timestamp.json"), await (await client.fetch("/repo/timestamp.json")).text());
  let settled = false;
  const waiting = waitForNews(watched, storage, 60_000, new AbortController().signal).then((r) => ((settled = true), { r, at: Date.now() }));
  await Bun.sleep(1000); // the device holds a wait
  // The held wait ends with the connection; the device asks again within 5 s, and HAProxy, with
  // no replica left, answers 503.
  await gw.stop();
  await Bun.sleep(7000);
  gw = await startGateway({ dataDir: gw.dataDir, args });
  // Until HAProxy routes to the replica again (its health checks may have marked it down while it
  // restarted), then the device's retry sleep (at most 5 s) and a margin: it holds a wait again.
  await until("HAProxy to route to the restarted replica", async () => (await client.fetch("/repo/timestamp.json")).status, (s) => s === 200, 30_000, 250);
  await Bun.sleep(6_000);
  writeFileSync(join(storage, "tuf", "timestamp.json"), await (await client.fetch("/repo/timestamp.json")).text());
  expect({ settled, statuses: statuses.includes(503) }).toEqual({ settled: false, statuses: true });
  const entry = { length: 0, hashes: { sha256: EMPTY_SHA256 }, custom: { version: "2", hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: {} } };
  expect((await gw.adminFetch("/admin/targets", post({ targets: { "amd64-linux-2": entry } }))).status).toBeLessThan(300);
  const signedAt = Date.now();
  const { r, at } = await waiting;
  // Told within seconds (the gateway checks for news every 250 ms; slack for a loaded machine), not
  // at the end of the 60 s wait, which is what the device did before.
  expect({ r, late: at - signedAt > 10_000 }).toEqual({ r: "news", late: false });
}, 90_000);

test("a wait the gateway itself answers 500 is not asked again within seconds: the device waits out its poll interval", async () => {
  // The gateway is up and failing (its own 500, not a proxy's 502-504): a fleet asking again
  // every 1 to 5 s would only add to its load.
  let asked = 0;
  const failing = Object.assign(Object.create(client) as DeviceClient, {
    fetch: async () => (asked++, new Response("internal error", { status: 500 })),
  });
  const t0 = Date.now();
  const r = await waitForNews(failing, storage, 6000, new AbortController().signal);
  // A quick retry comes within 5 s, so inside the 6 s wait.
  expect({ r, asked, waited: Date.now() - t0 >= 5900 }).toEqual({ r: "timeout", asked: 1, waited: true });
}, 30_000);
