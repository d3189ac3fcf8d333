/**
 * Deep JSON cannot hurt the gateway or another device: a device posting 100,000-deep JSON on
 * every device endpoint gets 400 each time (so do registration and the admin API), while another
 * device's 1,000 events (100 POSTs, one under way at a time) are all acknowledged and stored and /healthz, probed from its
 * own process, keeps answering within 100 ms (95th percentile: the machine is shared).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { anEvent } from "./_fixture.ts";
import { post } from "./_client.ts";
import { registerDevice, type TlsDevice } from "./_register.ts";

let gw: GatewayHandle;
let attacker: TlsDevice;
let victim: TlsDevice;

beforeAll(async () => {
  gw = await startGateway();
  [attacker, victim] = await Promise.all([registerDevice(gw.url, gw.adminToken, gw.caPem), registerDevice(gw.url, gw.adminToken, gw.caPem)]);
}, 120_000);

afterAll(async () => {
  await gw?.stop();
}, 60_000);

/** JSON text nested `depth` levels deep, placed inside an otherwise valid body by the caller. */
const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
const DEEP = nested(100_000);

/** Each device endpoint with a body that is valid but for one deep field. */
const DEVICE_BODIES: [method: string, path: string, body: string][] = [
  ["POST", "/events", `[{"id":"deep-1","deviceTime":"t","eventType":{"id":"EcuDownloadStarted","version":2},"event":{"correlationId":"c","x":${DEEP}}}]`],
  ["POST", "/apps-states", `{"deviceTime":"t","apps":{"a":{"uri":"u","state":"healthy","services":${DEEP}}}}`],
  ["PUT", "/system_info", `{"cpu":${DEEP}}`],
  ["PUT", "/system_info/network", `{"hostname":${DEEP},"mac":"m","local_ipv4":"1.2.3.4"}`],
  ["PUT", "/system_info/config", `{"pacman":${DEEP}}`],
];

/** Polls /healthz from a separate process (so the test's own load does not skew it) until stopped; prints the slowest answer. */
function startHealthProbe() {
  const code = `
    const ms = []; let bad = 0, stop = false;
    process.on("SIGTERM", () => { stop = true; });
    while (!stop) {
      const t0 = performance.now();
      try { const r = await fetch(process.env.URL + "/healthz", { tls: { ca: process.env.CA } }); await r.text(); if (r.status !== 200) bad++; } catch { bad++; }
      ms.push(performance.now() - t0);
      await Bun.sleep(10);
    }
    ms.sort((a, b) => a - b);
    console.log(JSON.stringify({ max: ms[ms.length - 1], p95: ms[Math.floor(ms.length * 0.95)], n: ms.length, bad }));`;
  const proc = Bun.spawn([process.execPath, "-e", code], { env: { ...process.env, URL: gw.url, CA: gw.caPem }, stdout: "pipe" });
  return {
    async stop(): Promise<{ max: number; p95: number; n: number; bad: number }> {
      proc.kill("SIGTERM");
      const out = await new Response(proc.stdout).text();
      await proc.exited;
      return JSON.parse(out.trim().split("\n").pop()!);
    },
  };
}

test(
  "100k-deep JSON gets 400 on every device endpoint while another device's 1,000 events are stored and /healthz stays under 100 ms",
  async () => {
    const probe = startHealthProbe();
    await Bun.sleep(500); // the probe's first (handshake) request is not part of the measure
    const attack = (async () => {
      const statuses: { path: string; status: number; error: string }[] = [];
      for (let round = 0; round < 3; round++) {
        await Promise.all(
          DEVICE_BODIES.map(async ([method, path, body]) => {
            const res = await attacker.fetch(`${gw.url}${path}`, { method, headers: { "content-type": "application/json" }, body });
            statuses.push({ path, status: res.status, error: ((await res.json()) as { error: string }).error });
          }),
        );
      }
      return statuses;
    })();
    // The victim's 1,000 events as fioup sends them: one POST under way at a time (a second is
    // answered 429, gateway/devices/writes.ts), here 100 of 10 events, one after the other.
    const acks: number[] = [];
    for (let i = 0; i < 100; i++) {
      const res = await victim.fetch(`${gw.url}/events`, post(Array.from({ length: 10 }, (_, j) => anEvent(`v-${i}-${j}`))));
      acks.push(res.status === 200 ? ((await res.json()) as { stored: number }).stored : -res.status);
    }
    const statuses = await attack;
    const health = await probe.stop();
    console.error(`deep-json: /healthz p95 ${health.p95.toFixed(1)} ms, slowest ${health.max.toFixed(1)} ms over ${health.n} probes`);

    expect(statuses).toHaveLength(3 * DEVICE_BODIES.length);
    for (const s of statuses) {
      expect(s).toMatchObject({ status: 400 });
      expect(s.error).toContain("nested deeper than 32 levels");
    }
    expect(acks.filter((a) => a !== 10)).toEqual([]);
    const updates = (await (await gw.adminFetch(`/admin/devices/${victim.uuid}/updates`)).json()) as { updates: { events: unknown[] }[] };
    expect(updates.updates.reduce((n, u) => n + u.events.length, 0)).toBe(1000);
    expect(health.bad).toBe(0);
    // p95, not the maximum: on a shared 2-core machine one probe can wait on other jobs' CPU.
    expect(health.p95).toBeLessThan(100);
  },
  120_000,
);

test("registration and the admin API refuse deep JSON with 400 too", async () => {
  const deep = nested(5_000); // under the admin endpoints' size limits, so the depth is what refuses it
  const reg = await gw.adminFetch("/devices", { method: "POST", headers: { "content-type": "application/json" }, body: `{"name":${deep}}` });
  expect(reg.status).toBe(400);
  for (const path of ["/admin/tokens", "/admin/targets"]) {
    const res = await gw.adminFetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: `{"x":${deep}}` });
    expect({ path, status: res.status, error: ((await res.json()) as { error: string }).error }).toMatchObject({ path, status: 400, error: expect.stringContaining("nested deeper") });
  }
});
