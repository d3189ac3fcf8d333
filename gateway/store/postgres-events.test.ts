/**
 * The PostgreSQL store's group commit of device events (EventGroupCommit): concurrent
 * POST /events of many devices share statements, and each caller still gets its own answer;
 * while PostgreSQL stalls, the events waiting are bounded and the excess is refused at once, and
 * so are the apps-states and system-info upserts (STATE_WRITES_MAX; SQLite's: ./_waiting-writes.test.ts).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SQL } from "bun";
import { startPostgres } from "../../test/harness/postgres.ts";
import { until } from "../../test/harness/tmp.ts";
import { aDevice, anEvent } from "./_contract.ts";
import { PostgresStore } from "./postgres.ts";
import { refusals } from "./_queue-full.ts";
import { STORE_RETRY_AFTER_S } from "./types.ts";

let pg: Awaited<ReturnType<typeof startPostgres>>;
let url: string;
let store: PostgresStore;

beforeAll(async () => {
  pg = await startPostgres();
  url = await pg.createDatabase("group_commit");
  store = await PostgresStore.connect(url, { max: 4 });
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
  // PostgreSQL refuses this device's rows for what they hold (a constraint, 23xxx): here a trigger of the test's.
  const sql = new SQL(url, { max: 1 });
  await sql.unsafe(`CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'check_violation'; END $$`);
  await sql.unsafe(`CREATE TRIGGER refuse_bad BEFORE INSERT ON events FOR EACH ROW WHEN (NEW.device_uuid = '${bad.uuid}') EXECUTE FUNCTION refuse_bad()`);
  await sql.close();
  const refused = anEvent();
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

/**
 * Another session holding `tables` (a migration, a long maintenance statement): every write to
 * them waits until `release()`; `ended` settles once the lock is given back. `done(...handles)`
 * (a test's finally) releases it, waits for that, and closes the test's connections.
 */
async function holdTables(locker: SQL, tables: string) {
  const release = Promise.withResolvers<void>();
  const locked = Promise.withResolvers<void>();
  const ended = locker.begin(async (tx) => {
    await tx.unsafe(`LOCK TABLE ${tables} IN ACCESS EXCLUSIVE MODE`);
    locked.resolve();
    await release.promise;
  });
  await Promise.race([locked.promise, ended]);
  const lock = { release: () => release.resolve(), ended: ended.then(() => {}) };
  const done = async (...handles: { close(): Promise<unknown> }[]) => {
    lock.release();
    await lock.ended.catch(() => {});
    for (const h of handles) await h.close();
  };
  return { ...lock, done };
}

/** How many `INSERT INTO events` wait for a lock now, as PostgreSQL sees them (`sql`: a connection not holding it). */
async function insertsWaiting(sql: SQL): Promise<number> {
  const rows = (await sql.unsafe(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO events%'",
  )) as { n: number }[];
  return rows[0]!.n;
}

test("while PostgreSQL stalls, events waiting beyond the bound are refused at once (503, Retry-After); the queued ones are all stored once it answers", async () => {
  const MAX = 20;
  const bounded = await PostgresStore.connect(url, { max: 4, eventQueueMax: MAX });
  const locker = new SQL({ url, max: 2 }); // one holds the lock, one looks at who waits
  const devices = await Promise.all(Array.from({ length: 8 }, () => bounded.putDevice(aDevice())));
  const lock = await holdTables(locker, "events"); // every INSERT waits
  const settled = (p: Promise<number>) => p.then((n) => ({ n }), (err: unknown) => ({ err }));
  try {
    // Two statements sent (the most in flight), both waiting for the lock: not counted as queued.
    // Each call's statement is seen blocked before the next call, so the two are not one statement.
    const sent = [0, 1].map((i) => ({ d: devices[i]!, events: [anEvent(), anEvent()] }));
    const running: Promise<number>[] = [];
    for (const [i, c] of sent.entries()) {
      running.push(bounded.appendEvents(c.d.uuid, c.events));
      await until(`${i + 1} INSERT INTO events waiting for the lock in pg_stat_activity`, () => insertsWaiting(locker), (n) => n >= i + 1);
    }
    expect(await insertsWaiting(locker)).toBe(2);
    // Then 13 posts of 2, 1, 2, 1 ... events: 20 events, the bound, all queued and waiting.
    const calls = Array.from({ length: 13 }, (_, i) => ({ d: devices[2 + (i % 6)]!, events: i % 2 ? [anEvent()] : [anEvent(), anEvent()] }));
    expect(calls.reduce((n, c) => n + c.events.length, 0)).toBe(MAX);
    const results = calls.map((c) => settled(bounded.appendEvents(c.d.uuid, c.events)));
    expect(await Promise.race([Promise.any([...running, ...results]).then(() => "answered"), Bun.sleep(300).then(() => "waiting")])).toBe("waiting");
    // Past the bound: a post of 1 event and one of 2, refused at once with the error app.ts answers 503 with Retry-After.
    const refused = { outcome: "EventQueueFullError", retryAfterSeconds: STORE_RETRY_AFTER_S, atOnce: true };
    expect(await refusals([() => bounded.appendEvents(devices[7]!.uuid, [anEvent()]), () => bounded.appendEvents(devices[6]!.uuid, [anEvent(), anEvent()])])).toEqual([refused, refused]);
    lock.release();
    await lock.ended;
    // Nothing queued was failed or lost: every accepted call answered, and its events stored exactly once.
    expect(await Promise.all(running)).toEqual([2, 2]);
    expect((await Promise.all(results)).map((r) => ("n" in r ? r.n : r.err))).toEqual(calls.map((c) => c.events.length));
    for (const d of devices) {
      const mine = [...sent, ...calls].filter((c) => c.d.uuid === d.uuid).flatMap((c) => c.events.map((e) => e.id));
      expect((await bounded.listEvents(d.uuid)).map((e) => e.id).sort()).toEqual(mine.sort());
    }
    // The queue drained: the device that was refused sends again and is taken.
    expect(await bounded.appendEvents(devices[7]!.uuid, [anEvent()])).toBe(1);
  } finally {
    await lock.done(locker, bounded);
  }
}, 20_000);

test("while PostgreSQL stalls, apps-states and system-info upserts waiting beyond the bound are refused at once (503, Retry-After); the ones taken are stored once it answers", async () => {
  const MAX = 6;
  // 4 connections: 4 upserts wait for the lock on them, 2 more for a free connection; all count.
  const bounded = await PostgresStore.connect(url, { max: 4, stateWritesMax: MAX });
  const locker = new SQL({ url, max: 1 });
  const devices = await Promise.all(Array.from({ length: 3 }, () => bounded.putDevice(aDevice())));
  const apps = (tag: string) => ({ deviceTime: "2026-12-02T00:00:00Z", apps: { [`app-${tag}`]: { uri: "hub.test/a@sha256:0", state: "healthy" as const, services: [] } } });
  const writes = [
    (d: number, tag: string) => bounded.putAppsStates(devices[d]!.uuid, apps(tag)),
    (d: number, tag: string) => bounded.putSystemInfo(devices[d]!.uuid, "hardware", { hostname: `host-${tag}` }),
    (d: number, tag: string) => bounded.putSystemInfo(devices[d]!.uuid, "network", { hostname: `host-${tag}` }),
    (d: number, tag: string) => bounded.putSystemInfo(devices[d]!.uuid, "config", `tags = "${tag}"`),
  ];
  const lock = await holdTables(locker, "apps_states, system_info"); // every upsert waits
  try {
    const taken = Array.from({ length: MAX }, (_, i) => ({ d: i % 3, kind: i % 4, tag: `taken-${i}` }));
    const answers = taken.map((w) => writes[w.kind]!(w.d, w.tag));
    expect(await Promise.race([Promise.any(answers).then(() => "answered", () => "failed"), Bun.sleep(300).then(() => "waiting")])).toBe("waiting");
    // Past the bound: every kind refused at once with the error app.ts answers 503 with Retry-After.
    const refused = { outcome: "StateWritesFullError", retryAfterSeconds: STORE_RETRY_AFTER_S, atOnce: true };
    expect(await refusals(writes.map((write, kind) => () => write(kind % 3, `refused-${kind}`)))).toEqual([refused, refused, refused, refused]);
    lock.release();
    await lock.ended;
    await Promise.all(answers);
    // What each device had taken last of each kind is stored; nothing refused was.
    expect(await Promise.all(devices.map(async (d) => Object.keys((await bounded.getAppsStates(d.uuid))?.apps ?? {})))).toEqual([["app-taken-0"], ["app-taken-4"], []]);
    expect(await Promise.all(devices.map((d) => bounded.getSystemInfo(d.uuid)))).toEqual([
      { config: 'tags = "taken-3"' },
      { hardware: { hostname: "host-taken-1" } },
      { network: { hostname: "host-taken-2" }, hardware: { hostname: "host-taken-5" } },
    ]);
    // Nothing waits now: the refused device sends again and is taken.
    await writes[0]!(0, "again");
    expect(Object.keys((await bounded.getAppsStates(devices[0]!.uuid))?.apps ?? {})).toEqual(["app-again"]);
  } finally {
    await lock.done(locker, bounded);
  }
}, 20_000);
