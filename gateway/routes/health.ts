/** GET /healthz: liveness plus a store round trip, for load balancers. */
import { Hono } from "hono";
import type { GatewayEnv } from "../env.ts";

export const health = new Hono<GatewayEnv>().get("/healthz", async (c) => {
  await c.var.gw.store.countDevices();
  return c.json({ ok: true });
});
