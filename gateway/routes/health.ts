/**
 * GET /healthz: liveness plus a store round trip, for load balancers and monitoring; 503 while the
 * database cannot be reached (the store's error) or writes fail for want of disk space
 * (disk-full.ts): reads may still work then, but no device can report.
 */
import { Hono } from "hono";
import type { GatewayEnv } from "../env.ts";
import { CA_FINGERPRINT_META } from "../store/open.ts";

export const health = new Hono<GatewayEnv>().get("/healthz", async (c) => {
  await c.var.gw.store.readMeta(CA_FINGERPRINT_META); // one keyed row: a count would scan the devices at every probe
  const full = c.var.gw.diskFull.since;
  if (full !== undefined) return c.json({ ok: false, error: `Writes fail for want of disk space since ${new Date(full).toISOString()}` }, 503);
  return c.json({ ok: true });
});
