/**
 * Bad networks: a fault-injecting TCP proxy (TLS passes through untouched)
 * sits between fioup and the gateway; the gateway's public URL is the proxy,
 * so TUF metadata, registry tokens and blobs all cross it. Connections are
 * dropped mid-blob, truncated and stalled; `fioup update`, rerun the way the
 * daemon would (up to 6 runs), still ends on the new target, resuming partial
 * blobs rather than starting over. The proxy counts the bytes it carried to the device; a
 * fault-free update of the same shape first measures what an update costs beyond its blobs
 * (TLS, TUF metadata, manifests, headers), so the faulty update may carry only its new blobs,
 * that overhead per run, and a slack per connection-cutting fault for the bytes in flight when
 * it cut. A fault that restarted a blob from zero carries its offset again (see SLACK_PER_FAULT)
 * and breaks the bound of the single-cut case (cut 4 MiB beyond the in-flight bound; the mixed case checks completion with
 * the same per-cut slack, which several cuts add up, so only the single cut is tight). fioup's own count of bytes received is printed beside the proxy's, raw:
 * it shows the device got no byte twice; the difference is what was in flight.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import {
  deviceOnV1,
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
/** Bytes an update carries beyond its new blobs, per run (measured fault-free). */
let overheadPerRun = 0;
/**
 * Per connection-cutting fault (drop, truncate): the bytes in flight when the connection broke,
 * sent by the proxy but never read by the device. They sit in the two loopback socket buffers,
 * which Linux autotunes up to the maxima of net.ipv4.tcp_wmem and tcp_rmem (measured up to 9 MiB
 * for one cut here), plus the cut TLS record and the retried request's head (1 MiB allowed). So
 * the bound is the kernel's, read from this machine; the single-cut case lands its cut 4 MiB
 * beyond it, so a blob restarted from zero there (carrying again the DEEP_CUT bytes sent before
 * the cut, where a resume carries again only what was in flight) always breaks the bound.
 */
const kernelMax = (f: string) => Number(readFileSync(`/proc/sys/net/ipv4/${f}`, "utf8").trim().split(/\s+/)[2]);
const SLACK_PER_FAULT = kernelMax("tcp_rmem") + kernelMax("tcp_wmem") + MiB;
/** Where the single cut lands; the blob it cuts goes on 8 MiB past it. */
const DEEP_CUT = Math.ceil((SLACK_PER_FAULT + 4 * MiB) / MiB) * MiB;
const DEEP_BLOB = DEEP_CUT + 8 * MiB;

beforeAll(async () => {
  proxy = await startFaultProxy(0, 1);
  const proxyUrl = `https://127.0.0.1:${proxy.port}`;
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway(["--public-url", proxyUrl])]);
  proxy.target = Number(new URL(gw.url).port);
  const viaProxy: TestGateway = { ...gw, url: proxyUrl, host: `127.0.0.1:${proxy.port}` };
  port = await freePort();
  device = await Device.create(dockerd);
  ({ pub } = await deviceOnV1({ gw: viaProxy, upstream, device, app: APP, repo: `rel/net${process.pid}`, port, body: "net v1" }));
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

  const blobs0 = await device.blobs();
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

  const total = last!.json?.bytesTotal ?? 0;
  // The update's new blobs, as the disk shows them (independent of fioup's counters).
  const blobs1 = await device.blobs();
  const newBytes = [...blobs1].filter(([d]) => !blobs0.has(d)).reduce((n, [, size]) => n + size, 0);
  if (!faults.length) overheadPerRun = carried - newBytes;
  const cuts = applied.filter((k) => k !== "stall").length;
  const bound = newBytes + overheadPerRun * codes.length + SLACK_PER_FAULT * cuts;
  const ok = last!.code === 0 && st.json.current.name === `amd64-linux-${version}` && served === body && carried <= bound;
  tally.record(
    name,
    ok ? "survived" : "failed",
    `faults applied: ${applied.join(", ") || "none"}${leftover ? ` (${leftover} never triggered)` : ""}; runs: exit ${codes.join(", ")}; ` +
      `new blobs ${newBytes} B, proxy carried ${carried} B (raw; bound ${bound} B = blobs + ${overheadPerRun} B/run overhead + ${SLACK_PER_FAULT} B/cut); fioup says ${last!.json?.bytesFetched ?? "?"}/${total} B`,
    { wire: carried, bound, newBytes, faults: applied.length, runs: codes.length },
  );
  expect(codes.at(-1), last!.stderr).toBe(0);
  expect(st.json.current.name).toBe(`amd64-linux-${version}`);
  expect(served).toBe(body);
  if (faults.length) expect(applied.length).toBeGreaterThan(0);
  // Resumed, not restarted: nothing already on disk crosses the wire again.
  expect(carried).toBeLessThanOrEqual(bound);
  return { applied, codes, carried, total };
}

describe("fioup through a faulty network", () => {
  test("a fault-free update measures the per-run overhead", async () => {
    const r = await updateThrough("baseline: no fault", [], 16 * MiB);
    expect(r.codes).toEqual([0]);
  }, 180_000);

  test("one connection dropped deep into a blob: the rerun resumes, nothing durable crosses the wire again", async () => {
    await updateThrough(`one drop at ${DEEP_CUT / MiB} MiB of a ${DEEP_BLOB / MiB} MiB blob`, [{ kind: "drop", afterBytes: DEEP_CUT }], DEEP_BLOB);
  }, 180_000);

  test("connections dropped, truncated and stalled mid-blob: the update still completes", async () => {
    await updateThrough(
      "mixed: drop at 6 MiB, stall 2 s at 1 MiB, truncate at 6 MiB, drop at 6 MiB",
      [
        { kind: "drop", afterBytes: 6 * MiB },
        { kind: "stall", afterBytes: 1 * MiB, stallMs: 2000 },
        { kind: "truncate", afterBytes: 6 * MiB },
        { kind: "drop", afterBytes: 6 * MiB },
      ],
      24 * MiB,
    );
  }, 180_000);

  if (FULL) {
    test("ten drops at random points", async () => {
      await updateThrough("10 drops at random offsets", Array.from({ length: 10 }, () => ({ kind: "drop" as const, afterBytes: Math.floor(8 * MiB + Math.random() * 2 * MiB) })), 40 * MiB);
    }, 300_000);
    test("five truncations", async () => {
      await updateThrough("5 truncations at random offsets", Array.from({ length: 5 }, () => ({ kind: "truncate" as const, afterBytes: Math.floor(8 * MiB + Math.random() * 2 * MiB) })), 40 * MiB);
    }, 300_000);
    test("three 5 s stalls", async () => {
      await updateThrough("3 stalls of 5 s", Array.from({ length: 3 }, () => ({ kind: "stall" as const, afterBytes: MiB, stallMs: 5000 })), 16 * MiB);
    }, 300_000);
  }
});
