/**
 * One write of each kind per device at a time: the queues in front of the database are shared by
 * every device, so a device that sends POST /events after POST /events without waiting for the
 * answers (firmware gone wrong, a compromised one) filled them and every other device's events
 * were refused 503. Now its second one while the first is under way is answered 429 at once, with
 * Retry-After, and other devices' writes, and its own writes of another kind, go on. The first is
 * held under way by another writer holding SQLite's lock.
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
