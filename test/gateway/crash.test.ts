/**
 * Durability: a gateway killed with SIGKILL while devices post events keeps
 * every event it acknowledged (2xx means durably stored).
 */
import { afterAll, expect, test } from "bun:test";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { until } from "../harness/tmp.ts";
import { makeDeviceCsr } from "./_device.ts";
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
  const k = await makeDeviceCsr();
  const reg = await tlsFetch({ ca })(`${first.url}/devices`, {
    ...post({ name: "d", uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux" }),
    headers: { "content-type": "application/json", authorization: `Bearer ${adminToken}` },
  });
  expect(reg.status).toBe(201);
  const cert = ((await reg.json()) as RegistrationResponse).certificate;
  const device = tlsFetch({ ca, cert, key: k.keyPem });

  // 8 concurrent posters; each records the ids the gateway acknowledged.
  const acked: string[] = [];
  let n = 0;
  let stop = false;
  const poster = async (w: number) => {
    while (!stop) {
      const id = `w${w}-${n++}`;
      try {
        const res = await device(`${first.url}/events`, post([anEvent(id)]));
        if (res.status === 200) acked.push(id);
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
  const res = await tlsFetch({ ca })(`${second.url}/admin/devices/${k.uuid}/updates`, { headers: { authorization: `Bearer ${adminToken}` } });
  expect(res.status).toBe(200);
  const { updates } = (await res.json()) as { updates: { events: { id: string }[] }[] };
  const stored = new Set(updates.flatMap((u) => u.events.map((e) => e.id)));
  const missing = acked.filter((id) => !stored.has(id));
  expect(missing).toEqual([]);
}, 60_000);
