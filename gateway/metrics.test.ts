import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Metrics, routeLabel } from "./metrics.ts";
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
