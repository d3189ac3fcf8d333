/**
 * Revoking a device ends its held push wait (GET /repo/wait) at once with 403, instead of
 * answering it 200 with the next version signed after the revocation.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { post } from "./_client.ts";
import { registerDevice } from "./_register.ts";

let g: GatewayHandle;

beforeAll(async () => {
  g = await startGateway();
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 60_000);

test("a held wait of a device being revoked is answered 403 at once, and another device's wait is not", async () => {
  const d = await registerDevice(g.url, g.adminToken, g.caPem);
  const other = await registerDevice(g.url, g.adminToken, g.caPem);
  const ts = (await (await d.fetch(`${g.url}/repo/timestamp.json`)).json()) as { signed: { version: number } };
  const after = ts.signed.version;
  const held = d.fetch(`${g.url}/repo/wait?after=${after}&timeout=40`).then(async (res) => ({ status: res.status, text: await res.text(), at: Date.now() }));
  const otherHeld = other.fetch(`${g.url}/repo/wait?after=${after}&timeout=40`).then((res) => res.status);
  await Bun.sleep(700); // both are holding their requests
  const revokedAt = Date.now();
  expect((await g.adminFetch(`/admin/devices/${d.uuid}/revoke`, { method: "POST" })).status).toBe(200);
  const r = await Promise.race([held, Bun.sleep(5000).then(() => undefined)]);
  expect(r).toBeDefined();
  expect(r!.status).toBe(403);
  expect(r!.text).toContain("Device revoked");
  expect(r!.at - revokedAt).toBeLessThan(2000);

  // A timestamp change afterwards reaches the device still in good standing.
  const entry = { length: 0, hashes: { sha256: EMPTY_SHA256 }, custom: { version: "7", hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { web: { uri: `${g.host}/main/web@sha256:${"d".repeat(64)}` } } } };
  expect((await g.adminFetch("/admin/targets", post({ targets: { "amd64-linux-7": entry } }))).status).toBeLessThan(300);
  expect(await otherHeld).toBe(200);
}, 60_000);
