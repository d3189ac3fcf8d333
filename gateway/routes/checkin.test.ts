/**
 * The device fast path (./checkin.ts) keeps the routes' behaviour: a device whose cache entry
 * is fresh is still refused once revoked, events are stored once, apps-states land, sightings
 * record the headers, and /metrics counts each answer under its route and status; a poll and a
 * push wait each look the device up once.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { anEvent, json, testGateway } from "../../test/gateway/_fixture.ts";

let t: Awaited<ReturnType<typeof testGateway>>;
beforeAll(async () => {
  t = await testGateway();
}, 120_000);
afterAll(async () => {
  await t.close();
}, 120_000);

test("check-in routes: answers, events once, apps-states, sightings and metrics; revoked at once", async () => {
  const d = await t.register();
  const m = t.gw.metrics;
  const before = { repo: m.requests("/repo/:file", 200), events: m.requests("/events", 200), apps: m.requests("/apps-states", 204), refused: m.requests("/events", 403) };
  const poll = await t.app.request("/repo/timestamp.json", { headers: { "x-ats-target": "amd64-linux-7" } }, { peer: d.peer });
  expect(poll.status).toBe(200);
  expect(poll.headers.get("cache-control")).toBe("no-store");
  expect(((await poll.json()) as { signed: { _type: string } }).signed._type).toBe("timestamp");
  const missing = await t.app.request("/repo/9.root.json", {}, { peer: d.peer });
  expect(missing.status).toBe(404);

  // The same event twice: stored once, the answer says so.
  const post = async () => (await t.app.request("/events", json([anEvent(`once-${d.uuid}`)]), { peer: d.peer })).json();
  expect(await post()).toEqual({ received: 1, stored: 1 });
  expect(await post()).toEqual({ received: 1, stored: 0 });
  expect((await t.gw.store.listEvents(d.uuid)).map((e) => e.id)).toEqual([`once-${d.uuid}`]);
  const bad = await t.app.request("/events", json([{ id: 1 }]), { peer: d.peer });
  expect(bad.status).toBe(400);

  const states = { deviceTime: "t", apps: { httpd: { uri: "r/main/httpd@sha256:1", state: "healthy", services: [{ name: "web", state: "running" }] } } };
  expect((await t.app.request("/apps-states", json(states), { peer: d.peer })).status).toBe(204);
  const shown = (await (await t.app.request(`/admin/devices/${d.uuid}`, t.admin())).json()) as Record<string, any>;
  expect(shown.appsStates).toEqual(states);

  await t.gw.sightings.flush();
  expect((await t.gw.store.getDevice(d.uuid))!.currentTarget).toBe("amd64-linux-7");

  expect(m.requests("/repo/:file", 200) - before.repo).toBe(1);
  expect(m.requests("/repo/:file", 404)).toBeGreaterThanOrEqual(1);
  expect(m.requests("/events", 200) - before.events).toBe(2);
  expect(m.requests("/events", 400)).toBeGreaterThanOrEqual(1);
  expect(m.requests("/apps-states", 204) - before.apps).toBe(1);
  const text = await (await t.app.request("/metrics")).text();
  expect(text).toContain(`gateway_requests_total{route="/apps-states",status="204"} ${m.requests("/apps-states", 204)}`);

  // Revoked while its cache entry is fresh: every check-in route refuses it at once.
  expect((await t.app.request(`/admin/devices/${d.uuid}/revoke`, t.admin({ method: "POST" }))).status).toBe(200);
  expect((await t.app.request("/repo/timestamp.json", {}, { peer: d.peer })).status).toBe(403);
  expect((await t.app.request("/events", json([anEvent(`after-${d.uuid}`)]), { peer: d.peer })).status).toBe(403);
  expect((await t.app.request("/apps-states", json(states), { peer: d.peer })).status).toBe(403);
  expect((await t.gw.store.listEvents(d.uuid)).map((e) => e.id)).toEqual([`once-${d.uuid}`]);
  expect(m.requests("/events", 403) - before.refused).toBe(1);
}, 60_000);

test("a metadata GET and a push wait each look their device up once, cached or not", async () => {
  const d = await t.register();
  const version = ((await (await t.app.request("/repo/timestamp.json", {}, { peer: d.peer })).json()) as { signed: { version: number } }).signed.version;
  const devices = t.gw.devices;
  const { fresh, get } = devices;
  const calls = { fresh: 0, get: 0 };
  devices.fresh = (uuid) => (calls.fresh++, fresh.call(devices, uuid));
  devices.get = (uuid) => (calls.get++, get.call(devices, uuid));
  const m = t.gw.metrics;
  try {
    for (const [path, status] of [["/repo/timestamp.json", 200], [`/repo/wait?after=${version}&timeout=0`, 204]] as const) {
      const label = path.startsWith("/repo/wait") ? "/repo/wait" : "/repo/:file";
      const counted = m.requests(label, status);
      // Cache entry gone: one look at the cache, one read through it.
      devices.invalidate(d.uuid);
      calls.fresh = calls.get = 0;
      expect((await t.app.request(path, {}, { peer: d.peer })).status).toBe(status);
      expect(calls).toEqual({ fresh: 1, get: 1 });
      // Fresh entry: the cache's row, nothing else.
      calls.fresh = calls.get = 0;
      expect((await t.app.request(path, {}, { peer: d.peer })).status).toBe(status);
      expect(calls).toEqual({ fresh: 1, get: 0 });
      expect(m.requests(label, status) - counted).toBe(2);
    }
  } finally {
    devices.fresh = fresh;
    devices.get = get;
  }
}, 60_000);
