/**
 * Bad networks: a fault-injecting TCP proxy (TLS passes through untouched)
 * sits between fioup and the gateway; the gateway's public URL is the proxy,
 * so TUF metadata, registry tokens and blobs all cross it. Connections are
 * dropped mid-blob, truncated and stalled; `fioup update`, rerun the way the
 * daemon would (up to 6 runs), still ends on the new target, resuming partial
 * blobs rather than starting over. Bytes re-fetched are reported.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  Device, Publisher, freePort, httpGet, httpdCompose, httpdImage, pushImageDetailed, randomBytes, startDockerRegistry,
  startDockerd, startTestGateway, type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "../fioup/_setup.ts";
import { startFaultProxy, type Fault, type FaultProxy } from "../harness/fault-proxy.ts";
import { FULL, Tally } from "./_tally.ts";

const tally = new Tally("network");
const APP = `relnet${process.pid}`;
const MiB = 1 << 20;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let proxy: FaultProxy;
let device: Device;
let pub: Publisher;
let port: number;
let version = 1;

beforeAll(async () => {
  proxy = await startFaultProxy(0, 1);
  const proxyUrl = `https://127.0.0.1:${proxy.port}`;
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway(["--public-url", proxyUrl])]);
  proxy.target = Number(new URL(gw.url).port);
  const viaProxy: TestGateway = { ...gw, url: proxyUrl, host: `127.0.0.1:${proxy.port}` };
  port = await freePort();
  const { ref } = await pushImageDetailed(upstream, `rel/net${process.pid}`, "v1", httpdImage("net v1"));
  pub = await Publisher.create(viaProxy, upstream, { [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
  device = await Device.create(dockerd);
  await device.register(viaProxy);
  await pub.publish(1);
  const r = await device.fioup("update");
  if (r.code !== 0) throw new Error(`v1 update failed: ${r.stderr}`);
}, 180_000);

afterAll(async () => {
  tally.print();
  await device?.cleanup([APP]).catch(() => {});
  await proxy?.close();
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

/** Publishes a new version with a `size`-byte random layer, queues `faults`, updates until done. */
async function updateThrough(name: string, faults: Fault[], size: number) {
  version++;
  const body = `net v${version}`;
  await pushImageDetailed(upstream, `rel/net${process.pid}`, `v${version}`, { ...httpdImage(body), layers: [{ "/www/index.html": body }, { "/big.bin": randomBytes(size) }] });
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(`${upstream.host}/rel/net${process.pid}:v${version}`, port) });
  await pub.publish(version);

  const down0 = proxy.bytesDown;
  const applied0 = proxy.applied.length;
  proxy.inject(...faults);
  const codes: number[] = [];
  let last;
  for (let run = 0; run < 6; run++) {
    last = await device.fioup("update");
    codes.push(last.code);
    if (last.code === 0) break;
  }
  const leftover = proxy.pending;
  const carried = proxy.bytesDown - down0;
  const applied = proxy.applied.slice(applied0).map((f) => f.kind);
  const st = await device.fioup("status", "--no-apps");
  const served = await httpGet(port);
  const ok = last!.code === 0 && st.json.current.name === `amd64-linux-${version}` && served === body;
  const total = last!.json?.bytesTotal ?? 0;
  tally.record(
    name,
    ok ? "survived" : "failed",
    `faults applied: ${applied.join(", ") || "none"}${leftover ? ` (${leftover} never triggered)` : ""}; runs: exit ${codes.join(", ")}; ` +
      `update ${total} B, fioup fetched ${last!.json?.bytesFetched ?? "?"} B, proxy carried ${carried} B (re-fetched + metadata ≈ ${Math.max(0, carried - total)} B)`,
  );
  expect(codes.at(-1), last!.stderr).toBe(0);
  expect(st.json.current.name).toBe(`amd64-linux-${version}`);
  expect(served).toBe(body);
  expect(applied.length).toBeGreaterThan(0);
  // Resumed, not restarted: the partial survives a cut, so far less than the cut points are fetched again.
  expect(carried).toBeLessThan(total * 2 + 4 * MiB);
  return { applied, codes, carried, total };
}

describe("fioup through a faulty network", () => {
  test("connections dropped, truncated and stalled mid-blob: the update still completes", async () => {
    await updateThrough(
      "mixed: drop at 1 MiB, stall 2 s at 0.5 MiB, truncate at 1.5 MiB, drop at 2 MiB",
      [
        { kind: "drop", afterBytes: 1 * MiB },
        { kind: "stall", afterBytes: MiB / 2, stallMs: 2000 },
        { kind: "truncate", afterBytes: 1.5 * MiB },
        { kind: "drop", afterBytes: 2 * MiB },
      ],
      8 * MiB,
    );
  }, 180_000);

  if (FULL) {
    test("ten drops at random points", async () => {
      await updateThrough("10 drops at random offsets", Array.from({ length: 10 }, () => ({ kind: "drop" as const, afterBytes: Math.floor(64 * 1024 + Math.random() * 3 * MiB) })), 16 * MiB);
    }, 300_000);
    test("five truncations", async () => {
      await updateThrough("5 truncations at random offsets", Array.from({ length: 5 }, () => ({ kind: "truncate" as const, afterBytes: Math.floor(64 * 1024 + Math.random() * 3 * MiB) })), 16 * MiB);
    }, 300_000);
    test("three 5 s stalls", async () => {
      await updateThrough("3 stalls of 5 s", Array.from({ length: 3 }, () => ({ kind: "stall" as const, afterBytes: MiB, stallMs: 5000 })), 16 * MiB);
    }, 300_000);
  }
});
