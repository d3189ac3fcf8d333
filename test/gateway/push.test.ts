/**
 * Push instead of poll: a device holding GET /repo/wait on one replica hears of a publish made
 * through another replica (both on one PostgreSQL) within a second of the targets being signed,
 * through fioup's own waiting code; without news the wait ends when the poll interval is up.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { DeviceClient } from "../../fioup/device-client.ts";
import { waitForNews } from "../../fioup/push.ts";
import { startGateway, startReplica, type GatewayHandle } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import { tempDir } from "../harness/tmp.ts";
import { post, tlsFetch } from "./_client.ts";
import { makeDeviceCsr } from "./_device.ts";

let pg: PostgresHandle;
let a: GatewayHandle;
let b: GatewayHandle;
let client: DeviceClient;
let storage: string;

beforeAll(async () => {
  pg = await startPostgres();
  const db = await pg.createDatabase("push");
  a = await startGateway({ db });
  b = await startReplica(a, { db });

  const { token } = (await (await a.adminFetch("/admin/tokens", post({ tags: ["main"] }))).json()) as { token: string };
  const k = await makeDeviceCsr();
  const reg = await tlsFetch({ ca: a.caPem })(`${a.url}/devices`, {
    ...post({ name: "dev", uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux" }),
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
  });
  expect(reg.status).toBe(201);
  const { certificate } = (await reg.json()) as RegistrationResponse;
  // The device is held by replica b.
  client = new DeviceClient(b.url, { cert: certificate, key: k.keyPem, ca: b.caPem }, { tags: ["main"], apps: [] });
  storage = await tempDir("push-device-");
  mkdirSync(join(storage, "tuf"));
  writeFileSync(join(storage, "tuf", "timestamp.json"), await (await client.fetch("/repo/timestamp.json")).text());
}, 120_000);

afterAll(async () => {
  await b?.stop();
  await a?.stop();
  await pg?.stop();
}, 60_000);

const target = (host: string, version: string) => ({
  [`amd64-linux-${version}`]: {
    length: 0,
    hashes: { sha256: EMPTY_SHA256 },
    custom: { version, hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { web: { uri: `${host}/main/web@sha256:${"d".repeat(64)}` } } },
  },
});

test("without news the wait lasts until the poll interval is up", async () => {
  const t0 = Date.now();
  expect(await waitForNews(client, storage, 1500, new AbortController().signal)).toBe("timeout");
  expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
});

test("the last second of a wait is slept, not asked for again and again", async () => {
  let asked = 0;
  const counting = Object.assign(Object.create(client) as DeviceClient, {
    fetch: (...args: Parameters<DeviceClient["fetch"]>) => (asked++, client.fetch(...args)),
  });
  expect(await waitForNews(counting, storage, 1500, new AbortController().signal)).toBe("timeout");
  // One 1 s hold, then the remaining half second asleep (a 0 s hold is answered at once).
  expect(asked).toBeLessThanOrEqual(2);
});

test("a publish through replica a wakes a device held by replica b within 1 s of the signing", async () => {
  const waiting = waitForNews(client, storage, 60_000, new AbortController().signal).then((r) => ({ r, at: Date.now() }));
  await Bun.sleep(500); // the device is holding its request
  const res = await a.adminFetch("/admin/targets", post({ targets: target(a.host, "5") }));
  expect(res.status).toBeLessThan(300);
  const signedAt = Date.now();
  const { r, at } = await waiting;
  expect(r).toBe("news");
  console.log(`device told ${at - signedAt} ms after the targets were signed`);
  expect(at - signedAt).toBeLessThan(1000);
});

test("a wait with a bad query is refused, and one without a certificate too", async () => {
  expect((await client.fetch("/repo/wait?after=-1")).status).toBe(400);
  expect((await client.fetch("/repo/wait?timeout=3600")).status).toBe(400);
  expect((await tlsFetch({ ca: b.caPem })(`${b.url}/repo/wait`)).status).toBe(401);
});
