/**
 * What a field device feels on a bad network, through a fault proxy in front
 * of the gateway (its public URL, so TUF, registry and events all cross it):
 * a gateway down for 3.5 s mid-fetch (four retries fail and back off: waits of
 * 50 ms, then 0.25, 0.5, 1 and 2 s, 3.8 s in all; a longer outage only adds
 * more of the same doubling), ten drops during one blob and a stall
 * each end in ONE `fioup update` run that completes, with the bytes over the
 * wire at most the update's size plus what was in flight at each fault; a
 * blob that never matches its digest is fetched at most twice, then the
 * target is marked bad with that reason.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Fault, FaultProxy } from "../harness/fault-proxy.ts";
import {
  httpGet, httpdCompose, httpdImage, pushImageDetailed, randomBytes, startProxiedDevice, type Device, type Publisher, type ProxiedDevice,
  type DockerRegistryHandle, type TestGateway,
} from "./_setup.ts";

const APP = `faults${process.pid}`;
const REPO = `faults/web${process.pid}`;
const MiB = 1 << 20;
/**
 * What one fault can throw away: bytes the proxy carried that sat in socket buffers when
 * the connection was reset (loopback buffers autotune to several MiB).
 */
const IN_FLIGHT = 8 * MiB;
/** What one fault may make the device receive twice: the chunk it was reading. */
const CHUNK = 256 * 1024;
/** TLS handshakes, TUF metadata, tokens, events and app states of one run. */
const OVERHEAD = 512 * 1024;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let proxy: FaultProxy;
let device: Device;
let pub: Publisher;
let port: number;
let version = 1;
let proxied: ProxiedDevice;

beforeAll(async () => {
  // A short stall timeout keeps the stall case fast; the default is 15 s.
  proxied = await startProxiedDevice({ app: APP, repo: REPO, body: "faults v1", config: "[fioup]\ndownload_stall_seconds = 2\n" });
  ({ upstream, gw, proxy, device, pub, port } = proxied);
  const r = await device.fioup("update");
  if (r.code !== 0) throw new Error(`v1 update failed: ${r.stderr}`);
}, 180_000);

afterAll(() => proxied?.stop());

/** Publishes a version with a `size`-byte random layer; returns its body and the layer. */
async function publishBig(size: number) {
  version++;
  const body = `faults v${version}`;
  const { ref, image } = await pushImageDetailed(upstream, REPO, `v${version}`, { ...httpdImage(body), layers: [{ "/www/index.html": body }, { "/big.bin": randomBytes(size) }] });
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
  await pub.publish(version);
  return { body, layer: image.layers.at(-1)! };
}

/**
 * The bytes of one run: the device received every byte of the update, at most a chunk per
 * fault twice (resumed with Range, never restarted), and the wire carried no more than that
 * plus what was in flight at each fault.
 */
function expectBytes(r: { json: { bytesTotal: number; bytesFetched: number } }, wire: number, faults: number) {
  expect(r.json.bytesFetched).toBeGreaterThanOrEqual(r.json.bytesTotal);
  expect(r.json.bytesFetched).toBeLessThanOrEqual(r.json.bytesTotal + faults * CHUNK);
  expect(wire).toBeLessThan(r.json.bytesFetched + faults * IN_FLIGHT + OVERHEAD);
}

/** One `fioup update` run with `faults` queued: its result, bytes over the wire and time. */
async function updateThrough(faults: Fault[]) {
  const down0 = proxy.bytesDown;
  proxy.inject(...faults);
  const t0 = Date.now();
  const r = await device.fioup("update");
  return { r, wire: proxy.bytesDown - down0, ms: Date.now() - t0 };
}

describe("fioup update on a good network", () => {
  test("reuses a few kept-alive connections", async () => {
    const { body } = await publishBig(4 * MiB);
    const c0 = proxy.connections;
    const { r } = await updateThrough([]);
    expect(r.code, r.stderr).toBe(0);
    expect(await httpGet(port)).toBe(body);
    expect(proxy.connections - c0).toBeLessThanOrEqual(8);
  }, 120_000);
});

describe("fioup update on a bad network: one run completes", () => {
  test("the gateway down for 3.5 s in the middle of a blob", async () => {
    const { body } = await publishBig(24 * MiB);
    const { r, wire, ms } = await updateThrough([{ kind: "down", afterBytes: 8 * MiB, downMs: 3_500 }]);
    expect(r.code, r.stderr).toBe(0);
    expect(proxy.applied.at(-1)?.kind).toBe("down");
    expect(ms).toBeGreaterThan(3_500);
    expect(await httpGet(port)).toBe(body);
    expectBytes(r, wire, 1);
  }, 120_000);

  test("ten dropped connections during one blob", async () => {
    const { body } = await publishBig(16 * MiB);
    const { r, wire } = await updateThrough(Array.from({ length: 10 }, () => ({ kind: "drop" as const, afterBytes: MiB })));
    expect(r.code, r.stderr).toBe(0);
    expect(proxy.pending).toBe(0);
    expect(await httpGet(port)).toBe(body);
    expectBytes(r, wire, 10);
  }, 120_000);

  test("a connection that stalls for 60 s is resumed after the stall timeout", async () => {
    const { body } = await publishBig(16 * MiB);
    const { r, wire, ms } = await updateThrough([{ kind: "stall", afterBytes: 4 * MiB, stallMs: 60_000 }]);
    expect(r.code, r.stderr).toBe(0);
    expect(proxy.applied.at(-1)?.kind).toBe("stall");
    expect(ms).toBeLessThan(40_000);
    expect(await httpGet(port)).toBe(body);
    expectBytes(r, wire, 1);
  }, 120_000);
});

describe("a failure that cannot heal", () => {
  test("a blob that never matches its digest is fetched at most twice, then the target is marked bad with that reason", async () => {
    const before = version + 1;
    const { layer } = await publishBig(4 * MiB);
    const file = join(gw.dataDir, "registry/blobs/sha256", layer.digest.slice(7));
    const evil = new Uint8Array(layer.gz);
    evil[evil.length - 20]! ^= 0xff;
    writeFileSync(file, evil);

    const down0 = proxy.bytesDown;
    const first = await device.fioup("update");
    expect(first.code, first.stderr).toBe(40);
    expect(first.stderr).toContain(layer.digest);
    const second = await device.fioup("update");
    expect(second.code, second.stderr).toBe(40);
    const third = await device.fioup("update");
    expect(third.code, third.stderr).toBe(3); // no update: the target is bad
    expect(proxy.bytesDown - down0).toBeLessThan(2 * layer.gz.length + 3 * OVERHEAD);

    const st = await device.fioup("status", "--no-apps");
    expect(st.json.current.name).toBe(`amd64-linux-${before - 1}`);
    expect(st.json.badTargets).toContain(`amd64-linux-${before}`);
    const db = new Database(join(device.sotaDir, "fioup.db"), { readonly: true });
    const bad = db.query<{ reason: string }, [string]>("SELECT reason FROM bad_targets WHERE name = ?").get(`amd64-linux-${before}`);
    db.close();
    expect(bad?.reason).toContain(`blob ${layer.digest} does not match its digest`);
  }, 120_000);
});
