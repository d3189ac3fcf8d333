/**
 * The PostgreSQL store's group commit of device events (EventGroupCommit): concurrent
 * POST /events of many devices share statements, and each caller still gets its own answer.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startPostgres } from "../../test/harness/postgres.ts";
import { aDevice, anEvent } from "./_contract.ts";
import { PostgresStore } from "./postgres.ts";

let pg: Awaited<ReturnType<typeof startPostgres>>;
let store: PostgresStore;

beforeAll(async () => {
  pg = await startPostgres();
  store = await PostgresStore.connect(await pg.createDatabase("group_commit"), { max: 4 });
});

afterAll(async () => {
  await store?.close();
  await pg?.stop();
});

test("concurrent appendEvents() of many devices: every event stored once, each caller told its own count", async () => {
  const devices = await Promise.all(Array.from({ length: 10 }, () => store.putDevice(aDevice())));
  const sent = devices.map(() => [anEvent(), anEvent()]);
  // Each device posts its two events three times at once (a retry racing the original): 30 calls in flight.
  const counts = await Promise.all(devices.flatMap((d, i) => [0, 1, 2].map(() => store.appendEvents(d.uuid, sent[i]!))));
  for (let i = 0; i < devices.length; i++) {
    const mine = counts.slice(i * 3, i * 3 + 3);
    expect(mine.reduce((a, b) => a + b, 0)).toBe(2);
    const listed = await store.listEvents(devices[i]!.uuid);
    expect(listed.map((e) => e.event.id).sort()).toEqual(sent[i]!.map((e) => e.id).sort());
  }
});

test("a device whose events PostgreSQL refuses fails alone: the devices sharing its statement are stored", async () => {
  const good = await Promise.all(Array.from({ length: 6 }, () => store.putDevice(aDevice())));
  const bad = await store.putDevice(aDevice());
  // The status trigger reads the body as jsonb, which refuses \u0000 in a string.
  const refused = anEvent({ eventType: { id: "EcuInstallationCompleted", version: 2 }, event: { correlationId: "c", success: false, details: "nul \u0000 here" } });
  const calls = [
    ...good.slice(0, 3).map((d) => store.appendEvents(d.uuid, [anEvent()])),
    store.appendEvents(bad.uuid, [refused]),
    ...good.slice(3).map((d) => store.appendEvents(d.uuid, [anEvent()])),
  ];
  const results = await Promise.allSettled(calls);
  expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled", "fulfilled"]);
  for (const d of good) expect((await store.listEvents(d.uuid)).length).toBe(1);
  expect(await store.listEvents(bad.uuid)).toEqual([]);
});

test("sightings and grouped events of the same devices at once never deadlock (both lock device rows in uuid order)", async () => {
  const devices = await Promise.all(Array.from({ length: 300 }, () => store.putDevice(aDevice())));
  const started = anEvent().eventType; // a download started: the status trigger updates the device row
  const failures: unknown[] = [];
  for (let round = 0; round < 6; round++) {
    const at = new Date().toISOString();
    // Sightings in the opposite order of the events, both while the other runs.
    const sightings = store.recordSightings([...devices].reverse().map((d) => ({ uuid: d.uuid, at }))).catch((e) => failures.push(e));
    const events = devices.map((d) => store.appendEvents(d.uuid, [anEvent({ eventType: started })]).catch((e) => failures.push(e)));
    await Promise.all([sightings, ...events]);
  }
  expect(failures).toEqual([]);
  // A deadlock of the events' statement would not fail a device (its devices are retried one by one) but stall them a second.
  expect(readFileSync(join(pg.dir, "postgres.log"), "utf8")).not.toContain("deadlock detected");
  expect((await store.getDevice(devices[0]!.uuid))?.lastSeen).toBeDefined();
});
