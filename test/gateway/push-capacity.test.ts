/**
 * Held push requests never take every connection: with `--max-connections 10`, nine devices'
 * connections may hold GET /repo/wait, a tenth hold is answered 503 at once (the device polls
 * instead), and check-ins still get a connection and their answer.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { post, tlsFetch } from "./_client.ts";
import { makeDeviceCsr } from "./_device.ts";

let gw: GatewayHandle;
let devFetch: ReturnType<typeof tlsFetch>;

beforeAll(async () => {
  gw = await startGateway({ args: ["--max-connections", "10"] });
  const { token } = (await (await gw.adminFetch("/admin/tokens", { ...post({ tags: ["main"] }), keepalive: false })).json()) as { token: string };
  const k = await makeDeviceCsr();
  const reg = await tlsFetch({ ca: gw.caPem })(`${gw.url}/devices`, {
    ...post({ name: "dev", uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux" }),
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    keepalive: false,
  });
  expect(reg.status).toBe(201);
  const { certificate } = (await reg.json()) as RegistrationResponse;
  devFetch = tlsFetch({ ca: gw.caPem, cert: certificate, key: k.keyPem });
}, 60_000);

afterAll(async () => {
  await gw?.stop();
}, 30_000);

test("holds take at most 90% of the connections; past it a hold is answered 503 and check-ins still get through", async () => {
  const { version } = ((await (await devFetch(`${gw.url}/repo/timestamp.json`)).json()) as { signed: { version: number } }).signed;
  const stop = new AbortController();
  // Nine holds on nine connections (parallel requests do not share one).
  const holds = Array.from({ length: 9 }, () => devFetch(`${gw.url}/repo/wait?after=${version}&timeout=20`, { signal: stop.signal }).then((r) => r.status, () => 0));
  await Bun.sleep(1500);
  const t0 = Date.now();
  const extra = await devFetch(`${gw.url}/repo/wait?after=${version}&timeout=20`);
  expect(extra.status).toBe(503);
  expect(extra.headers.get("retry-after")).toBe("60");
  expect(Date.now() - t0).toBeLessThan(1000);
  for (let i = 0; i < 5; i++) expect((await devFetch(`${gw.url}/repo/timestamp.json`)).status).toBe(200);
  stop.abort();
  expect((await Promise.all(holds)).every((s) => s === 0)).toBe(true); // all of them were still held
}, 60_000);
