/**
 * The bound on apps-states and system-info upserts waiting for the database (STATE_WRITES_MAX,
 * ./_waiting-writes.ts), through the gateway on a SQLite file: while a second connection holds
 * the write lock, the writes past the bound are answered 503 with `Retry-After` at once; those
 * taken are all stored once the lock is free. PostgreSQL's: ./postgres-events.test.ts.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { json, testGateway } from "../../test/gateway/_fixture.ts";
import { STORE_RETRY_AFTER_S } from "./types.ts";
import { EventQueueFullError, eventQueueBound } from "./_waiting-writes.ts";

const MAX = 6;

let t: Awaited<ReturnType<typeof testGateway>>;
beforeAll(async () => {
  process.env.GATEWAY_STATE_WRITES_MAX = String(MAX);
  try {
    t = await testGateway({ dbFile: true });
  } finally {
    delete process.env.GATEWAY_STATE_WRITES_MAX;
  }
}, 60_000);
afterAll(async () => {
  await t?.close();
}, 60_000);

const appsStates = (tag: string) => ({ deviceTime: new Date().toISOString(), apps: { [`app-${tag}`]: { uri: `hub.test/app-${tag}@sha256:${"0".repeat(64)}`, state: "healthy", services: [] } } });

test("a held write lock: apps-states and system info past the bound get 503 with Retry-After at once; the ones taken are stored once it is free", async () => {
  const devices = await Promise.all(Array.from({ length: 4 }, () => t.register()));
  // One of each device write the bound covers, `MAX` in all, from three devices (a device has one
  // write of each kind under way at a time, gateway/devices/writes.ts: the refused ones are a fourth's).
  const writes = [
    (d: number, tag: string) => t.app.request("/apps-states", json(appsStates(tag)), { peer: devices[d]!.peer }),
    (d: number, tag: string) => t.app.request("/system_info", json({ hostname: `host-${tag}` }, "PUT"), { peer: devices[d]!.peer }),
    (d: number, tag: string) => t.app.request("/system_info/network", json({ hostname: `host-${tag}`, mac: "00:11:22:33:44:55", local_ipv4: "10.0.0.2" }, "PUT"), { peer: devices[d]!.peer }),
    (d: number, tag: string) => t.app.request("/system_info/config", json(`[pacman]\ntags = "${tag}"\n`, "PUT"), { peer: devices[d]!.peer }),
  ];
  const other = new Database(t.dbPath!);
  try {
    other.exec("BEGIN IMMEDIATE"); // a backup or a second process: every commit of the writer thread waits (busy_timeout, 10 s)
    const taken = Array.from({ length: MAX }, (_, i) => ({ d: i % 3, kind: i % 4, tag: `taken-${i}` }));
    const answers = taken.map((w) => writes[w.kind]!(w.d, w.tag));
    await Bun.sleep(300);
    expect(await Promise.race([Promise.any(answers).then(() => "answered"), Bun.sleep(100).then(() => "waiting")])).toBe("waiting");

    // Past the bound: every kind refused, at once.
    const started = performance.now();
    const refused = await Promise.all(writes.map((write, kind) => Promise.race([write(3, `refused-${kind}`), Bun.sleep(1000).then(() => "still waiting" as const)])));
    const took = performance.now() - started;
    for (const res of refused) {
      if (res === "still waiting") throw new Error("a write past the bound was not refused at once");
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe(String(STORE_RETRY_AFTER_S));
      expect(((await res.json()) as { error: string }).error).toContain("waiting for the database");
    }
    expect(took).toBeLessThan(1000); // not after the stall
    expect(t.gw.metrics.requests("/apps-states", 503)).toBe(1);

    other.exec("COMMIT");
    for (const res of await Promise.all(answers)) expect(res.status).toBe(204);
  } finally {
    if (other.inTransaction) other.exec("ROLLBACK");
    other.close();
  }
  // The last write taken of each kind per device is what is stored; nothing refused was.
  const stored = await Promise.all(devices.slice(0, 3).map(async (d) => ({ apps: await t.gw.store.getAppsStates(d.uuid), info: await t.gw.store.getSystemInfo(d.uuid) })));
  const network = { mac: "00:11:22:33:44:55", local_ipv4: "10.0.0.2" };
  expect(stored.map((s) => Object.keys(s.apps?.apps ?? {}))).toEqual([["app-taken-0"], ["app-taken-4"], []]);
  expect(stored.map((s) => s.info)).toEqual([
    { config: '[pacman]\ntags = "taken-3"\n' },
    { hardware: { hostname: "host-taken-1" } },
    { network: { hostname: "host-taken-2", ...network }, hardware: { hostname: "host-taken-5" } },
  ]);
  // With nothing waiting, the refused writes sent again are taken.
  expect((await writes[0]!(0, "again")).status).toBe(204);
  expect(Object.keys((await t.gw.store.getAppsStates(devices[0]!.uuid))?.apps ?? {})).toEqual(["app-again"]);
}, 20_000);

test("the bound: a write larger than it is taken when nothing waits, refused while anything does; counts given back", () => {
  const bound = eventQueueBound(10);
  expect(bound.admit(25, "events")).toBeUndefined(); // nothing waits: a POST of 25 events is never refused for good
  expect(bound.admit(1, "events")).toBeInstanceOf(EventQueueFullError);
  bound.done(25);
  expect(bound.admit(10, "events")).toBeUndefined();
  expect(bound.admit(1, "events")).toBeInstanceOf(EventQueueFullError);
  bound.done(10);
  expect(bound.waiting).toBe(0);
});
