/**
 * GET /healthz: liveness plus a store round trip, for load balancers and monitoring; 503 while the
 * database cannot be reached (the store's error) or writes fail for want of disk space
 * (disk-full.ts): reads may still work then, but no device can report.
 *
 * The signer that cannot re-sign the TUF timestamp (a key file gone or unreadable,
 * ota/refresh-timer.ts) answers 200 with the reason in `warnings`: it still serves devices, which
 * take the timestamp they have until it expires, and the shipped HAProxy configs would take a
 * replica answering 503 out of rotation, a single one with every device's reports. A monitor reads
 * the warning here, or `gateway_tuf_resign_failing` on /metrics; the dashboard says it too.
 */
import { Hono } from "hono";
import type { GatewayEnv } from "../env.ts";
import { CA_FINGERPRINT_META } from "../store/open.ts";

export const health = new Hono<GatewayEnv>().get("/healthz", async (c) => {
  await c.var.gw.store.readMeta(CA_FINGERPRINT_META); // one keyed row: a count would scan the devices at every probe
  const full = c.var.gw.diskFull.since;
  if (full !== undefined) return c.json({ ok: false, error: `Writes fail for want of disk space since ${new Date(full).toISOString()}` }, 503);
  const signing = c.var.gw.tufFailing?.();
  if (signing) return c.json({ ok: true, warnings: [`Cannot re-sign the TUF metadata since ${new Date(signing.since).toISOString()}: ${signing.error}`] });
  return c.json({ ok: true });
});
