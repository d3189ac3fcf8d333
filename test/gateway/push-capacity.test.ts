/**
 * Held push requests never take every connection: with `--max-connections 11`, nine devices'
 * connections (90%, rounded down) may hold GET /repo/wait, a tenth device's hold is answered 503 at
 * once (it polls instead), and check-ins still get a connection and their answer; a wait there is
 * news for already, or a probe with timeout 0, is still answered at once. The eleventh
 * connection is the test's own to /metrics, which counts the held waits and the refused one. Ten
 * devices, as one device holds at most two waits (push-per-device.test.ts).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { metricSample, startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { until } from "../harness/tmp.ts";
import type { tlsFetch } from "./_client.ts";
import { registerDevice } from "./_register.ts";

let gw: GatewayHandle;
let devFetches: ReturnType<typeof tlsFetch>[];

beforeAll(async () => {
  gw = await startGateway({ args: ["--max-connections", "11"] });
  // One by one: each registration's connection is idle after it, and closed for the next if need be.
  devFetches = [];
  for (let i = 0; i < 10; i++) devFetches.push((await registerDevice(gw.url, gw.adminToken, gw.caPem)).fetch);
}, 60_000);

afterAll(async () => {
  await gw?.stop();
}, 30_000);

test("holds take at most 90% of the connections; past it a hold is answered 503 and check-ins still get through", async () => {
  const devFetch = devFetches[9]!;
  const { version } = ((await (await devFetch(`${gw.url}/repo/timestamp.json`)).json()) as { signed: { version: number } }).signed;
  const stop = new AbortController();
  // Nine devices' holds on nine connections.
  const holds = devFetches.slice(0, 9).map((f) => f(`${gw.url}/repo/wait?after=${version}&timeout=20`, { signal: stop.signal }).then((r) => r.status, () => 0));
  // Until the gateway holds all nine (on a loaded machine their handshakes take as long as they take).
  await until("nine push waits held (gateway_push_waits_held on /metrics)", heldWaits, (n) => n === 9, 15_000); // under the holds' own 20 s, so none ran out meanwhile
  const t0 = Date.now();
  const extra = await devFetch(`${gw.url}/repo/wait?after=${version}&timeout=20`);
  expect(extra.status).toBe(503);
  expect(extra.headers.get("retry-after")).toBe("60");
  expect(Date.now() - t0).toBeLessThan(1000);
  for (let i = 0; i < 5; i++) expect((await devFetch(`${gw.url}/repo/timestamp.json`)).status).toBe(200);
  expect(await metricSample(gw, "gateway_push_waits_refused_total")).toBe(1);
  // What needs no holding is still answered at once: news there already, and a probe whether the gateway is back.
  const behind = await devFetch(`${gw.url}/repo/wait?after=${version - 1}&timeout=20`);
  expect(behind.status).toBe(200);
  expect(await behind.json()).toEqual({ version });
  expect((await devFetch(`${gw.url}/repo/wait?after=${version}&timeout=0`)).status).toBe(204);
  expect(await heldWaits()).toBe(9);
  stop.abort();
  expect((await Promise.all(holds)).every((s) => s === 0)).toBe(true); // all of them were still held
  await until("the aborted waits released", heldWaits, (n) => n === 0);
}, 60_000);

// /metrics is asked on the one kept-alive connection the connection limit leaves for it.
const heldWaits = () => metricSample(gw, "gateway_push_waits_held");
