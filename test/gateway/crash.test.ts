/**
 * Durability: a gateway killed with SIGKILL while devices post events keeps
 * every event it acknowledged (2xx means durably stored).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { makeDeviceCsr } from "./_device.ts";
import { anEvent } from "./_fixture.ts";
import { post, tlsFetch } from "./_client.ts";
import { spawnGateway, type SpawnedGateway } from "./_spawn.ts";

const started: SpawnedGateway[] = [];
let dir: string | undefined;

afterAll(async () => {
  for (const g of started) {
    g.proc.kill("SIGKILL");
    await g.proc.exited;
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("every acknowledged event survives SIGKILL of the gateway", async () => {
  dir = await mkdtemp(join(tmpdir(), "gw-crash-"));
  const first = await spawnGateway(dir);
  started.push(first);
  const ca = await readFile(join(dir, "pki", "ca.pem"), "utf8");
  const adminToken = (await readFile(join(dir, "admin-token"), "utf8")).trim();
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
  while (acked.length < 200) await Bun.sleep(10);
  first.proc.kill("SIGKILL");
  await first.proc.exited;
  stop = true;
  await Promise.all(workers);
  expect(acked.length).toBeGreaterThanOrEqual(200);

  const second = await spawnGateway(dir);
  started.push(second);
  const res = await tlsFetch({ ca })(`${second.url}/admin/devices/${k.uuid}/updates`, { headers: { authorization: `Bearer ${adminToken}` } });
  expect(res.status).toBe(200);
  const { updates } = (await res.json()) as { updates: { events: { id: string }[] }[] };
  const stored = new Set(updates.flatMap((u) => u.events.map((e) => e.id)));
  const missing = acked.filter((id) => !stored.has(id));
  expect(missing).toEqual([]);
}, 60_000);
