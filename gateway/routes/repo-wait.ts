/**
 * GET /repo/wait?after=N&timeout=S: push for devices, as a long poll. A device that trusts
 * timestamp version N holds this request; it is answered `{version}` as soon as a newer signed
 * timestamp exists (a publish, or a re-signing), or 204 after S seconds (at most 60, below the
 * transport's idle deadline). Then the device runs its usual TUF refresh: push only says "look
 * now", everything the device installs is still verified exactly as when it polls.
 *
 * Every replica learns of a new timestamp from the database (TimestampWatch), so a device held
 * by one replica hears of a publish made through another.
 *
 * @module
 */
import { Hono } from "hono";
import { requireDevice } from "../devices/auth.ts";
import type { Gateway, GatewayEnv } from "../env.ts";
import { TimestampWatch } from "../push.ts";

export const MAX_WAIT_SECONDS = 60;

const watches = new WeakMap<Gateway, TimestampWatch>();
const watchOf = (gw: Gateway) => {
  let w = watches.get(gw);
  if (!w) watches.set(gw, (w = new TimestampWatch(gw.store.tuf)));
  return w;
};

export const repoWait = new Hono<GatewayEnv>().get("/repo/wait", requireDevice, async (c) => {
  const after = Number(c.req.query("after") ?? "0");
  const timeout = Number(c.req.query("timeout") ?? "30");
  if (!Number.isInteger(after) || after < 0) return c.json({ error: "Invalid after: expected the timestamp version the device trusts" }, 400);
  if (!Number.isFinite(timeout) || timeout < 0 || timeout > MAX_WAIT_SECONDS)
    return c.json({ error: `Invalid timeout: expected 0 to ${MAX_WAIT_SECONDS} seconds` }, 400);
  const version = await watchOf(c.var.gw).waitAfter(after, timeout * 1000, c.req.raw.signal);
  c.header("x-push", "long-poll");
  c.header("cache-control", "no-store");
  return version === undefined ? c.body(null, 204) : c.json({ version });
});
