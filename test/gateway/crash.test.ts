/**
 * Durability: a gateway killed with SIGKILL while devices post events keeps
 * every event it acknowledged (2xx means durably stored).
 */
import { afterAll, expect, test } from "bun:test";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { until } from "../harness/tmp.ts";
import { registerDevice } from "./_register.ts";
import { anEvent } from "./_fixture.ts";
import { post, tlsFetch } from "./_client.ts";

const started: GatewayHandle[] = [];

afterAll(async () => {
  for (const g of started) await g.stop();
}, 120_000);

test("every acknowledged event survives SIGKILL of the gateway", async () => {
  const first = await startGateway();
  started.push(first);
  const ca = first.caPem;
  const adminToken = first.adminToken;
  // 8 devices posting at once, each one POST after another (as fioup does); each records the ids the gateway acknowledged.
  const devices = await Promise.all(Array.from({ length: 8 }, () => registerDevice(first.url, adminToken, ca)));
  const acked: { uuid: string; id: string }[] = [];
  let n = 0;
  let stop = false;
  const poster = async (w: number) => {
    const d = devices[w]!;
    while (!stop) {
      const id = `w${w}-${n++}`;
      try {
        const res = await d.fetch(`${first.url}/events`, post([anEvent(id)]));
        if (res.status === 200) acked.push({ uuid: d.uuid, id });
      } catch {
        return; // connection killed
      }
    }
  };
  const workers = Array.from({ length: 8 }, (_, w) => poster(w));
  await until("200 events acknowledged before the kill", () => acked.length, (n) => n >= 200, 30_000);
  await first.kill();
  stop = true;
  await Promise.all(workers);
  expect(acked.length).toBeGreaterThanOrEqual(200);

  const second = await startGateway({ dataDir: first.dataDir });
  started.push(second);
  const stored = new Set<string>();
  for (const d of devices) {
    const res = await tlsFetch({ ca })(`${second.url}/admin/devices/${d.uuid}/updates`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(res.status).toBe(200);
    const { updates } = (await res.json()) as { updates: { events: { id: string }[] }[] };
    for (const u of updates) for (const e of u.events) stored.add(`${d.uuid}/${e.id}`);
  }
  const missing = acked.filter((a) => !stored.has(`${a.uuid}/${a.id}`));
  expect(missing).toEqual([]);
}, 60_000);
