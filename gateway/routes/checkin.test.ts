/**
 * The device fast path (./checkin.ts) keeps the routes' behaviour: a device whose cache entry
 * is fresh is still refused once revoked, events are stored once, apps-states land, sightings
 * record the headers, and /metrics counts each answer under its route and status; a poll and a
 * push wait each look the device up once.
 *
 * Reached from the TLS transport's parsed head (fetchHead: no web Request, no Response), the
 * routes answer the same bytes as through a web Request (the transport with `fetch` alone):
 * status line, headers and body, for answers, refusals and errors alike, counted once in /metrics
 * under the same label, with the sighting noted. A device that is not in good standing, a head a
 * Request would not take as is and a body that streams still go to the app.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { anEvent, json, testGateway } from "../../test/gateway/_fixture.ts";
import { createAdmission } from "../admission.ts";
import type { Bindings } from "../env.ts";
import type { HeadRequest } from "../transport/options.ts";
import type { RequestLoop } from "../transport/requests.ts";
import { exchange as exchangeOn, testLoop } from "../transport/_test-loop.ts";

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

/** What reached the app's web fetch, and what the head handler answered itself. */
const seen = { fetch: 0, head: 0 };

/** The transport's request loop over the test gateway, with the head handler or without it. */
const loopOf = (withHead: boolean) =>
  testLoop({
    fetch: (req: Request, env: Bindings) => (seen.fetch++, t.app.fetch(req, env)),
    ...(withHead
      ? {
          fetchHead: (req: HeadRequest, env: Bindings) => {
            const answer = t.app.fetchHead(req, env);
            if (answer !== undefined) seen.head++;
            return answer;
          },
        }
      : {}),
    admit: createAdmission({ devices: t.gw.devices, tokenValid: () => false }),
  });

/** Sends one request's bytes on a kept-alive connection of `peer` and returns the answer's bytes, the date line blanked. */
const exchange = async (loop: RequestLoop, peer: Bindings["peer"], request: string) => (await exchangeOn(loop, request, peer)).text;

const get = (target: string, extra = "", host = "gw.test:8443") => `GET ${target} HTTP/1.1\r\nhost: ${host}\r\nx-ats-target: amd64-linux-3\r\n${extra}\r\n`;
const post = (target: string, body: string) =>
  `POST ${target} HTTP/1.1\r\nhost: gw.test:8443\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

test("device routes answer the same bytes from the parsed head as through a Request, counted once, sighting noted", async () => {
  const d = await t.register();
  const viaHead = loopOf(true);
  const viaRequest = loopOf(false);
  const version = ((await (await t.app.request("/repo/timestamp.json", {}, { peer: d.peer })).json()) as { signed: { version: number } }).signed.version;
  const states = JSON.stringify({ deviceTime: "t", apps: {} });
  const cases: [string, (n: number) => string, number][] = [
    ["poll", () => get("/repo/timestamp.json"), 200],
    ["missing metadata", () => get("/repo/9.root.json"), 404],
    ["push wait, no news", () => get(`/repo/wait?after=${version}&timeout=0`), 204],
    ["push wait, news", () => get("/repo/wait?after=0&timeout=0"), 200],
    ["push wait, bad query", () => get("/repo/wait?after=x"), 400],
    ["event", (n) => post("/events", JSON.stringify([anEvent(`head-${n}-${d.uuid}`)])), 200],
    ["event, invalid", () => post("/events", JSON.stringify([{ id: 1 }])), 400],
    ["event, not JSON", () => post("/events", "[{"), 400],
    ["event, too large", () => post("/events", `[${" ".repeat(300 * 1024)}]`), 413],
    ["apps-states", () => post("/apps-states", states), 204],
    ["HTTP/1.0", () => get("/repo/timestamp.json").replace("HTTP/1.1", "HTTP/1.0"), 200],
  ];
  const m = t.gw.metrics;
  for (const [name, request, status] of cases) {
    const label = name.startsWith("push") ? "/repo/wait" : name.includes("metadata") || name === "poll" || name === "HTTP/1.0" ? "/repo/:file" : name.startsWith("event") ? "/events" : "/apps-states";
    const counted = m.requests(label, status);
    seen.fetch = seen.head = 0;
    const a = await exchange(viaHead, d.peer, request(1));
    // A body over 64 KiB streams: the Request's way even with the head handler.
    expect({ name, ...seen }).toEqual({ name, fetch: name.includes("too large") ? 1 : 0, head: name.includes("too large") ? 0 : 1 });
    const b = await exchange(viaRequest, d.peer, request(2));
    expect({ name, a }).toEqual({ name, a: b });
    expect(a.startsWith(`HTTP/1.1 ${status} `)).toBe(true);
    expect(m.requests(label, status) - counted).toBe(2);
  }
  expect(await exchange(viaHead, d.peer, get("/repo/timestamp.json"))).toContain("cache-control: no-store\r\ncontent-type: application/json\r\ndate: -\r\ncontent-length: ");
  // The parsed head's sighting: its headers read in any case, as Headers.get reads them.
  await exchange(viaHead, d.peer, "GET /repo/timestamp.json HTTP/1.1\r\nhost: gw.test\r\nX-ATS-Target: amd64-linux-9\r\n\r\n");
  await t.gw.sightings.flush();
  expect((await t.gw.store.getDevice(d.uuid))!.currentTarget).toBe("amd64-linux-9");
}, 60_000);

test("pipelined check-ins in one read are answered in order from the parsed heads, as through Requests", async () => {
  const d = await t.register();
  const event = (n: string) => post("/events", JSON.stringify([anEvent(`pipelined-${n}-${d.uuid}`)]));
  const answers = async (withHead: boolean, n: string) => {
    seen.fetch = seen.head = 0;
    const text = await exchange(loopOf(withHead), d.peer, get("/repo/timestamp.json") + event(n) + get("/repo/9.root.json"));
    return { text: text.replaceAll(/\r\ndate: [^\r]*\r\n/g, "\r\ndate: -\r\n"), ...seen };
  };
  const a = await answers(true, "a");
  const b = await answers(false, "b");
  expect(a.text.match(/HTTP\/1\.1 \d+/g)).toEqual(["HTTP/1.1 200", "HTTP/1.1 200", "HTTP/1.1 404"]);
  expect(a.text).toBe(b.text);
  expect({ head: a.head, fetch: a.fetch }).toEqual({ head: 3, fetch: 0 });
  expect({ head: b.head, fetch: b.fetch }).toEqual({ head: 0, fetch: 3 });
}, 60_000);

test("a device not in good standing, a head a Request would not take as is, and other paths go to the app", async () => {
  const d = await t.register();
  const stranger = await t.register();
  const viaHead = loopOf(true);
  const viaRequest = loopOf(false);
  expect((await t.app.request(`/admin/devices/${d.uuid}/revoke`, t.admin({ method: "POST" }))).status).toBe(200);
  const cases: [string, Bindings["peer"], string, number][] = [
    ["revoked, poll", d.peer, get("/repo/timestamp.json"), 403],
    ["revoked, event", d.peer, post("/events", JSON.stringify([anEvent(`revoked-${d.uuid}`)])), 403],
    ["no certificate", undefined, get("/repo/timestamp.json"), 401],
    ["not registered", { cn: crypto.randomUUID(), serial: stranger.peer.serial }, get("/repo/timestamp.json"), 403],
    ["empty event body", stranger.peer, post("/events", ""), 400],
    ["path not in the table", stranger.peer, get("/repo/timestamp.json/x"), 404],
    ["a header the Headers class refuses", stranger.peer, get("/repo/timestamp.json", "bad header: 1\r\n"), 400],
    // The Request's URL joins Host and target: a Host the URL parser refuses, or one that would move
    // the path, is refused by the head's parser (http1.ts PLAIN_HOST) before anything reads the path.
    ["a Host with a space", stranger.peer, get("/repo/timestamp.json", "", "a b"), 400],
    ["an unclosed IPv6 Host", stranger.peer, get("/repo/timestamp.json", "", "[::1"), 400],
    ["a Host with a path", stranger.peer, get("/repo/timestamp.json", "", "gw/x"), 400],
    ["a Host with a query", stranger.peer, get("/repo/timestamp.json", "", "gw?x"), 400],
  ];
  for (const [name, peer, request, status] of cases) {
    seen.fetch = seen.head = 0;
    const a = await exchange(viaHead, peer, request);
    expect({ name, head: seen.head }).toEqual({ name, head: 0 });
    const b = await exchange(viaRequest, peer, request);
    expect({ name, a }).toEqual({ name, a: b });
    expect({ name, status: a.slice(9, 12) }).toEqual({ name, status: String(status) });
  }
  expect((await t.gw.store.listEvents(d.uuid)).length).toBe(0);
}, 60_000);
