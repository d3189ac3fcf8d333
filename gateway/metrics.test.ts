import { describe, expect, test } from "bun:test";
import { Metrics, routeLabel } from "./metrics.ts";

describe("metrics", () => {
  test("route labels stay bounded: ids and digests collapse", () => {
    expect(routeLabel("/admin/devices/0b7e-uuid/updates")).toBe("/admin/devices/:id/updates");
    expect(routeLabel("/admin/devices/0b7e-uuid")).toBe("/admin/devices/:id");
    expect(routeLabel("/admin/keys/rotate")).toBe("/admin/keys/rotate");
    expect(routeLabel("/v2/main/app/blobs/sha256:abc")).toBe("/v2/*");
    expect(routeLabel("/repo/12.root.json")).toBe("/repo/*");
    expect(routeLabel("/repo/timestamp.json")).toBe("/repo/timestamp.json");
    expect(routeLabel("/events")).toBe("/events");
    expect(routeLabel("/random/thing")).toBe("other");
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
  });
});
