/**
 * Load against one real gateway (bench/reliability/load.ts): devices with
 * their own certificates check in and post events; no 5xx, no acknowledged
 * event lost, including across a SIGKILL and restart. Default: a 40-device,
 * 4-second smoke run; RELIABILITY_FULL=1: 10,000 devices for 60 s
 * (RELIABILITY_LOAD_DEVICES / _SECONDS override).
 */
import { afterAll, expect, test } from "bun:test";
import { runLoad } from "../../bench/reliability/load.ts";
import { FULL, Tally } from "./_tally.ts";

const tally = new Tally("load");
afterAll(() => tally.print());

const devices = Number(process.env.RELIABILITY_LOAD_DEVICES ?? (FULL ? 10_000 : 40));
const seconds = Number(process.env.RELIABILITY_LOAD_SECONDS ?? (FULL ? 60 : 4));

test(`${devices} devices for ${seconds} s: no 5xx, no acknowledged event lost across a SIGKILL`, async () => {
  const r = await runLoad({ devices, seconds, concurrency: FULL ? 64 : 16 });
  const ok = r.serverErrors === 0 && r.lostBeforeKill === 0 && r.lostAfterRestart === 0 && r.adminComplete === r.adminSampled && r.eventsAcked > 0;
  tally.record(
    `${devices} devices x ${seconds} s, ${r.concurrency} in flight`,
    ok ? "survived" : "failed",
    `registered in ${r.registerSeconds} s; ${r.requests} requests (${r.requestsPerSecond}/s, p50 ${r.p50ms} ms, p99 ${r.p99ms} ms); statuses ${JSON.stringify(r.status)}; ` +
      `network errors ${r.networkErrors}; ${r.eventsAcked} events acked, missing ${r.lostBeforeKill} before / ${r.lostAfterRestart} after SIGKILL+restart`,
  );
  expect(r.serverErrors).toBe(0);
  expect(r.eventsAcked).toBeGreaterThan(0);
  expect(r.lostBeforeKill).toBe(0);
  expect(r.lostAfterRestart).toBe(0);
  expect(r.adminComplete).toBe(r.adminSampled);
}, (FULL ? 40 : 2) * 60_000);
