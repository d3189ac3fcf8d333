import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Metrics, routeLabel, SharedRead, STORE_GAUGES_MAX_AGE_MS } from "./metrics.ts";
import { testGateway } from "../test/gateway/_fixture.ts";

describe("metrics", () => {
  let t: Awaited<ReturnType<typeof testGateway>>;
  beforeAll(async () => {
    t = await testGateway();
  });
  afterAll(async () => {
    await t?.close();
  });

  const routes = (text: string) => new Set([...text.matchAll(/gateway_requests_total\{route="([^"]*)"/g)].map((m) => m[1]));

  test("route labels are route patterns: unknown paths and ids never make new labels", async () => {
    const auth = t.admin();
    for (let i = 0; i < 50; i++) {
      await t.app.request(`/admin/keys/unknown-${i}`, { ...auth, method: "POST" });
      await t.app.request(`/admin/keys/${i}/x/y`, auth);
      await t.app.request(`/nowhere/${i}`);
      await t.app.request(`/repo/${i}.root.json`);
      await t.app.request(`/admin/devices/${crypto.randomUUID()}`, auth);
    }
    const text = await (await t.app.request("/metrics")).text();
    const labels = routes(text);
    for (const l of labels) expect(l).not.toMatch(/unknown-|nowhere|[0-9a-f]{8}-/);
    expect(labels).toContain("/admin/devices/:uuid");
    expect(labels.size).toBeLessThan(8);
  });

  test("a path with no route at all is labelled other", () => {
    expect(routeLabel("/*")).toBe("other");
    expect(routeLabel("/repo/:file")).toBe("/repo/:file");
  });

  test("render() prints Prometheus text with counters and gauges", () => {
    const m = new Metrics();
    m.count("/events", 200);
    m.count("/events", 200);
    m.count("/events", 400);
    const text = m.render({ gateway_devices: { help: "Registered devices", value: 7 } });
    expect(text).toContain('gateway_requests_total{route="/events",status="200"} 2');
    expect(text).toContain('gateway_requests_total{route="/events",status="400"} 1');
    expect(text).toContain("# TYPE gateway_devices gauge\ngateway_devices 7");
    expect(text).not.toContain("gateway_connections_open");
    m.connections = () => ({ open: 3, unauthenticated: 1, capped: 5, timedOut: 2 });
    const withConns = m.render({});
    expect(withConns).toContain("# TYPE gateway_connections_open gauge\ngateway_connections_open 3");
    expect(withConns).toContain("# TYPE gateway_connections_timed_out_total counter\ngateway_connections_timed_out_total 2");
  });
});

describe("the database's gauges on /metrics (no credentials needed)", () => {
  let t: Awaited<ReturnType<typeof testGateway>>;
  beforeAll(async () => {
    t = await testGateway();
  });
  afterAll(async () => {
    await t?.close();
  });

  test("20 scrapes at once and more right after count the events once, and /healthz counts nothing", async () => {
    const store = t.gw.store;
    const counted = { events: 0, devices: 0 };
    const countEvents = store.countEvents.bind(store);
    const countDevices = store.countDevices.bind(store);
    store.countEvents = () => (counted.events++, countEvents());
    store.countDevices = () => (counted.devices++, countDevices());
    try {
      t.gw.metrics.storeGauges.forget();
      const texts = await Promise.all(Array.from({ length: 20 }, async () => (await t.app.request("/metrics")).text()));
      for (let i = 0; i < 5; i++) texts.push(await (await t.app.request("/metrics")).text());
      for (const text of texts) {
        expect(text).toContain("\ngateway_database_up 1\n");
        expect(text).toMatch(/\ngateway_events \d+\n/);
      }
      expect(counted).toEqual({ events: 1, devices: 1 });
      for (let i = 0; i < 5; i++) expect((await t.app.request("/healthz")).status).toBe(200);
      expect(counted).toEqual({ events: 1, devices: 1 });
    } finally {
      store.countEvents = countEvents;
      store.countDevices = countDevices;
    }
  });

  test("SharedRead: one read for the callers while it runs and for maxAge after; a failed read is not kept", async () => {
    let now = 0;
    let reads = 0;
    const shared = new SharedRead<number>(STORE_GAUGES_MAX_AGE_MS, () => now);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const read = async () => (await gate, ++reads);
    const both = Promise.all([shared.get(read), shared.get(read)]);
    release();
    expect(await both).toEqual([1, 1]);
    now = STORE_GAUGES_MAX_AGE_MS - 1;
    expect(await shared.get(read)).toBe(1);
    now = STORE_GAUGES_MAX_AGE_MS;
    expect(await shared.get(read)).toBe(2);
    now += STORE_GAUGES_MAX_AGE_MS;
    await expect(shared.get(() => Promise.reject(new Error("down")))).rejects.toThrow("down");
    expect(await shared.get(read)).toBe(3);
  });
});
