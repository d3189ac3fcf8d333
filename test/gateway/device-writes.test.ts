/**
 * One write of each kind per device at a time: the queues in front of the database are shared by
 * every device, so a device that sends POST /events after POST /events without waiting for the
 * answers (firmware gone wrong, a compromised one) filled them and every other device's events
 * were refused 503. Now its second one while the first is under way is answered 429 at once, with
 * Retry-After, and other devices' writes, and its own writes of another kind, go on. The first is
 * held under way by another writer holding SQLite's lock. And past 10,000 events in a minute a
 * device is answered 429 until the minute ends (a device in a loop filled the disk for everyone).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { post } from "./_client.ts";
import { anEvent } from "./_fixture.ts";
import { registerDevice } from "./_register.ts";

let gw: GatewayHandle;
beforeAll(async () => {
  gw = await startGateway({ db: "" }); // SQLite: its write lock is what holds the first write under way
}, 60_000);
afterAll(async () => {
  await gw?.stop();
});

test("a device's second POST /events while its first is under way is answered 429 at once; another device's, and its own apps-states, are not", async () => {
  const [a, b] = [await registerDevice(gw.url, gw.adminToken, gw.caPem), await registerDevice(gw.url, gw.adminToken, gw.caPem)];
  const holder = new Database(join(gw.dataDir, "gateway.db"));
  holder.exec("BEGIN IMMEDIATE");
  let released = false;
  try {
    const first = a.fetch(`${gw.url}/events`, post([anEvent("first")]));
    await Bun.sleep(300); // the first is under way: its commit waits for the lock
    const t0 = Date.now();
    const second = await a.fetch(`${gw.url}/events`, post([anEvent("second")]));
    expect(second.status).toBe(429);
    expect(second.headers.get("retry-after")).toBe("1");
    expect(((await second.json()) as { error: string }).error).toBe("This device has a POST /events under way on this gateway: send it again once that one is answered");
    expect(Date.now() - t0).toBeLessThan(1000);
    const other = b.fetch(`${gw.url}/events`, post([anEvent("other")]));
    const states = a.fetch(`${gw.url}/apps-states`, post({ deviceTime: new Date().toISOString(), apps: {} }));
    await Bun.sleep(300);
    holder.exec("COMMIT");
    released = true;
    expect((await first).status).toBe(200);
    expect((await other).status).toBe(200);
    expect((await states).status).toBe(204);
    // Answered, the device sends the second again and it is taken.
    expect((await a.fetch(`${gw.url}/events`, post([anEvent("second")]))).status).toBe(200);
  } finally {
    if (!released) holder.exec("COMMIT");
    holder.close();
  }
}, 60_000);

test("a device past 10,000 events in a minute is answered 429 with Retry-After to the minute's end; another device is not", async () => {
  const [flood, other] = [await registerDevice(gw.url, gw.adminToken, gw.caPem), await registerDevice(gw.url, gw.adminToken, gw.caPem)];
  // All within one minute of the clock: not in its last 5 s.
  const into = Date.now() % 60_000;
  if (into > 55_000) await Bun.sleep(60_000 - into + 100);
  const batch = (tag: string, n: number) => post(Array.from({ length: n }, (_, i) => anEvent(`${tag}-${i}`)));
  for (let i = 0; i < 20; i++) expect((await flood.fetch(`${gw.url}/events`, batch(`a${i}`, 500))).status).toBe(200);
  const past = await flood.fetch(`${gw.url}/events`, batch("c", 1));
  expect(past.status).toBe(429);
  expect(((await past.json()) as { error: string }).error).toBe("This device sent more than 10000 events in a minute: send the rest after it");
  const retry = Number(past.headers.get("retry-after"));
  expect(retry).toBeGreaterThanOrEqual(1);
  expect(retry).toBeLessThanOrEqual(60);
  expect((await other.fetch(`${gw.url}/events`, batch("o", 10))).status).toBe(200);
  // What it was refused is not stored (the device keeps it queued); what it was answered 200 for is.
  const stored = (await (await gw.adminFetch(`/admin/devices/${flood.uuid}/updates`)).json()) as { updates: { events: { id: string }[] }[] };
  expect(stored.updates.flatMap((u) => u.events.map((e) => e.id)).filter((id) => id.startsWith("c-"))).toEqual([]);
}, 60_000);
