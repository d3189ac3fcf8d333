/** GET /metrics: Prometheus text (requests by route and status, devices, events). */
import { Hono } from "hono";
import type { GatewayEnv } from "../env.ts";

export const metrics = new Hono<GatewayEnv>().get("/metrics", async (c) => {
  const { store, metrics, sightings } = c.var.gw;
  const [devices, events] = await Promise.all([store.countDevices(), store.countEvents(), metrics.rollouts.refresh()]);
  const text = metrics.render({
    gateway_devices: { help: "Registered devices", value: devices },
    gateway_events: { help: "Stored device events", value: events },
    gateway_pending_sightings: { help: "Check-ins not yet written", value: sightings.pending },
  });
  return c.text(text, 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
});
