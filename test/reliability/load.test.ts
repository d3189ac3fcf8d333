/**
 * Load against one real gateway (bench/reliability/load.ts): devices with
 * their own certificates check in and post events; the gateway is SIGKILLed
 * halfway, with posts in flight, and restarted; devices send again what was not
 * acknowledged. No 5xx, every acknowledged event stored, none stored twice,
 * nothing left unacknowledged. Default: a 40-device,
 * 4-second smoke run; RELIABILITY_FULL=1: 10,000 devices for 60 s
 * (RELIABILITY_LOAD_DEVICES / _SECONDS override).
 */
import { afterAll, expect, test } from "bun:test";
import { runLoad } from "../../bench/reliability/load.ts";
import { testDbKind } from "../harness/gateway.ts";
import { FULL, Tally } from "./_tally.ts";

const tally = new Tally("load");
afterAll(() => tally.print());

const devices = Number(process.env.RELIABILITY_LOAD_DEVICES ?? (FULL ? 10_000 : 40));
const seconds = Number(process.env.RELIABILITY_LOAD_SECONDS ?? (FULL ? 60 : 4));

test(`${devices} devices for ${seconds} s, gateway SIGKILLed halfway: every acknowledged event stored once`, async () => {
  const r = await runLoad({ devices, seconds, concurrency: FULL ? 64 : 16 });
  const ok =
    r.serverErrors === 0 && r.lostBeforeKill === 0 && r.lostAfterRestart === 0 && r.duplicates === 0 && r.unacked === 0 &&
    r.adminComplete === r.adminSampled && r.eventsAcked > 0 && r.retriedPosts > 0;
  tally.record(
    `${devices} devices x ${seconds} s, ${r.concurrency} in flight`,
    ok ? "survived" : "failed",
    `registered in ${r.registerSeconds} s; ${r.requests} requests (${r.requestsPerSecond}/s, p50 ${r.p50ms} ms, p99 ${r.p99ms} ms); statuses ${JSON.stringify(r.status)}; ` +
      `network errors ${r.networkErrors}; killed under load, down ${r.downSeconds} s, ${r.retriedPosts} posts sent again; ` +
      `${r.eventsAcked} events acked, ${r.eventsStored} stored, ${r.duplicates} duplicate(s), ${r.unacked} batch(es) never acked, missing ${r.lostBeforeKill} / ${r.lostAfterRestart} after a second SIGKILL`,
    { acked: r.eventsAcked, stored: r.eventsStored, duplicates: r.duplicates, missing: r.lostAfterRestart, retried: r.retriedPosts, devices, db: testDbKind() },
  );
  expect(r.serverErrors).toBe(0);
  expect(r.eventsAcked).toBeGreaterThan(0);
  expect(r.lostBeforeKill).toBe(0);
  expect(r.lostAfterRestart).toBe(0);
  expect(r.duplicates).toBe(0);
  expect(r.unacked).toBe(0);
  expect(r.retriedPosts).toBeGreaterThan(0); // the kill did cut posts
  expect(r.eventsStored).toBe(r.eventsAcked);
  expect(r.adminComplete).toBe(r.adminSampled);
}, (FULL ? 40 : 2) * 60_000);
