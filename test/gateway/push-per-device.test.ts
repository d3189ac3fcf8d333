/**
 * One device certificate cannot take the push waits of a whole replica: a device holds at most
 * two GET /repo/wait at once (gateway/devices/waits.ts MAX_WAITS_PER_DEVICE), and one more ends its
 * oldest, answered 204 as a wait whose time is up. With `--max-connections 24` a replica holds 21
 * waits (90%): a greedy device opening 24 of them keeps two, and another device's wait is still
 * held (before the cap: 503, and that device polled), and fioup on a third device still hears of
 * a publish. fioup's own waiting code (fioup/push.ts, what its daemon runs) whose wait is the one
 * ended asks again at once and keeps push: a refusal would have it poll out its interval.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { DeviceClient } from "../../fioup/device-client.ts";
import { waitForNews } from "../../fioup/push.ts";
import { metricSample, startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir, until } from "../harness/tmp.ts";
import { post } from "./_client.ts";
import { registerDevice, type TlsDevice } from "./_register.ts";

let g: GatewayHandle;
let version: number;

beforeAll(async () => {
  g = await startGateway({ args: ["--max-connections", "24"] });
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 60_000);

const held = () => metricSample(g, "gateway_push_waits_held");
let published = 0;
/** Signs a new target, so a new timestamp: every held wait is told. */
async function publish(): Promise<number> {
  const v = String(++published);
  const entry = { length: 0, hashes: { sha256: EMPTY_SHA256 }, custom: { version: v, hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { web: { uri: `${g.host}/main/web@sha256:${"d".repeat(64)}` } } } };
  expect((await g.adminFetch("/admin/targets", post({ targets: { [`amd64-linux-${v}`]: entry } }))).status).toBeLessThan(300);
  return Date.now();
}

/** A wait of `d`'s, its status once answered (0: the connection failed), `undefined` while held. */
function hold(d: TlsDevice, signal?: AbortSignal) {
  const w = { status: undefined as number | undefined, done: undefined as unknown as Promise<number> };
  w.done = d.fetch(`${g.url}/repo/wait?after=${version}&timeout=50`, { signal }).then(
    async (r) => (await r.text(), (w.status = r.status)),
    () => (w.status = 0),
  );
  return w;
}

/** fioup's storage with the timestamp `d` trusts now, and its client. */
async function fioupOf(d: TlsDevice) {
  const client = new DeviceClient(g.url, { cert: d.cert, key: d.key, ca: g.caPem }, { tags: ["main"], apps: [] });
  const storage = await tempDir("push-per-device-");
  mkdirSync(join(storage, "tuf"));
  writeFileSync(join(storage, "tuf", "timestamp.json"), await (await client.fetch("/repo/timestamp.json")).text());
  return { client, storage };
}

test("a device opening one wait more than two ends its oldest; it cannot take another device's place", async () => {
  const greedy = await registerDevice(g.url, g.adminToken, g.caPem);
  const other = await registerDevice(g.url, g.adminToken, g.caPem);
  const honest = await registerDevice(g.url, g.adminToken, g.caPem);
  version = ((await (await greedy.fetch(`${g.url}/repo/timestamp.json`)).json()) as { signed: { version: number } }).signed.version;
  const stop = new AbortController();
  try {
    await greedyAndOthers(greedy, other, honest, stop.signal);
  } finally {
    stop.abort();
  }
}, 120_000);

async function greedyAndOthers(greedy: TlsDevice, other: TlsDevice, honest: TlsDevice, signal: AbortSignal) {
  // The oldest of the greedy device's waits is the one ended, answered as a wait whose time is up.
  const first = hold(greedy, signal);
  await until("the greedy device's first wait held", held, (n) => n === 1, 15_000);
  const second = hold(greedy, signal);
  await until("its second wait held", held, (n) => n === 2, 15_000);
  const third = hold(greedy, signal);
  expect(await Promise.race([first.done, Bun.sleep(5000).then(() => "still held")])).toBe(204);
  expect([second.status, third.status]).toEqual([undefined, undefined]);

  // Then as many as the replica may hold (21 of 24 connections), and more.
  const flood = Array.from({ length: 21 }, () => hold(greedy, signal));
  const greedyWaits = [second, third, ...flood];
  const answered = () => greedyWaits.filter((w) => w.status !== undefined).length;
  // Settled: every greedy wait is either held or answered (without the cap: 21 held, 2 answered 503).
  await until("the greedy device's waits answered or held", async () => answered() + (await held()), (n) => n === greedyWaits.length, 30_000);

  // Another device's wait is held, not refused.
  const others = hold(other, signal);
  expect(await Promise.race([others.done, Bun.sleep(1500).then(() => "held")])).toBe("held");
  expect(await held()).toBe(3);
  // fioup on a third device holds its wait too, and hears of a publish at once.
  const f = await fioupOf(honest);
  const told = waitForNews(f.client, f.storage, 30_000, signal).then((r) => ({ r, at: Date.now() }));
  await until("fioup's wait held", held, (n) => n === 4, 15_000);
  expect(await metricSample(g, "gateway_push_waits_refused_total")).toBe(0);

  const signedAt = await publish();
  const { r, at } = await told;
  expect(r).toBe("news");
  expect(at - signedAt).toBeLessThan(1500);
  expect(await others.done).toBe(200);
  // The greedy device kept its two newest waits (told too), every older one was ended with 204.
  const statuses = await Promise.all(greedyWaits.map((w) => w.done));
  expect(statuses.filter((s) => s === 200).length).toBe(2);
  expect(statuses.filter((s) => s === 204).length).toBe(greedyWaits.length - 2);
  // The first, and every greedy wait but the two newest: counted for the operator.
  expect(await metricSample(g, "gateway_push_waits_ended_per_device_total")).toBe(1 + greedyWaits.length - 2);
}

test("fioup whose wait is ended by newer ones of its certificate asks again and still hears of a publish", async () => {
  await until("no wait of the test before held", held, (n) => n === 0, 15_000);
  const d = await registerDevice(g.url, g.adminToken, g.caPem);
  version = ((await (await d.fetch(`${g.url}/repo/timestamp.json`)).json()) as { signed: { version: number } }).signed.version;
  const f = await fioupOf(d);
  const stop = new AbortController();
  try {
    await fioupEnded(d, f, stop.signal);
  } finally {
    stop.abort();
  }
}, 120_000);

async function fioupEnded(d: TlsDevice, f: Awaited<ReturnType<typeof fioupOf>>, signal: AbortSignal) {
  const told = waitForNews(f.client, f.storage, 30_000, signal).then((r) => ({ r, at: Date.now() }));
  await until("fioup's wait held", held, (n) => n === 1, 15_000);
  const a = hold(d, signal);
  await until("a second wait of its certificate held", held, (n) => n === 2, 15_000);
  // The third ends fioup's (the oldest); fioup asks again at once, which ends `a`, now the oldest.
  const b = hold(d, signal);
  expect(await Promise.race([a.done, Bun.sleep(5000).then(() => "still held")])).toBe(204);
  await until("fioup's new wait and b held", held, (n) => n === 2, 5000);
  expect(b.status).toBeUndefined();

  const signedAt = await publish();
  const { r, at } = await told;
  expect(r).toBe("news");
  expect(at - signedAt).toBeLessThan(1500);
  expect(await b.done).toBe(200);
  // fioup's wait and `a`, after the 22 of the test before (same gateway).
  expect(await metricSample(g, "gateway_push_waits_ended_per_device_total")).toBe(22 + 2);
}
