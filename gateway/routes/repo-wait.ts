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
 * A replica holds thousands of these at once, so a held request keeps little: a device's wait is
 * answered by the device fast path (./checkin.ts), which calls `waitForNews` without Hono's
 * router context or middleware frames (a few kB each, times the devices held); the route below
 * answers only what the fast path hands the app (no certificate, a refused device). While held,
 * a wait keeps its waiter in the shared TimestampWatch (no timer of its own) and the connection's
 * close hook, so that a device that goes away stops being held at once (bench/push measures the
 * memory per held request).
 * Held requests may take only a share of the transport's --max-connections (connection-caps.ts):
 * past it the device is answered 503 at once and polls, and check-ins still find a connection;
 * a wait that needs no holding (news there already, or a probe with timeout 0) is answered as ever.
 * One device holds at most MAX_WAITS_PER_DEVICE (devices/waits.ts) of them on a replica: one more ends its oldest,
 * answered 204 as a wait whose time is up, so one device certificate (a compromised one, or a
 * client gone wrong) cannot take that share and leave every other device polling. The new wait
 * wins rather than being refused (429): a device whose old connection died without the gateway
 * noticing (a NAT that forgot it) would otherwise be refused until the old wait timed out, and
 * fioup polls out its interval after a refusal, whereas after a 204 it simply asks again.
 * Both ways in (the fast path in ./checkin.ts and the route below) call `waitForNews`, so the
 * cap has this one home; it is per replica, as the waits are.
 * Revoking a device ends its waits held on this replica at once, answered 403 as any request of
 * a revoked device (`endDeviceWaits` in devices/waits.ts, called by the revoke route); another replica learns of the
 * revocation through its device cache (5 s), so there a held wait ends with its news or timeout
 * and the device's next request is refused.
 *
 * @module
 */
import { Hono } from "hono";
import { DEVICE_REVOKED, requireDevice } from "../devices/auth.ts";
import type { ClientConnection, Gateway, GatewayEnv } from "../env.ts";
import type { WaitEnd } from "../push.ts";
import { watchOf } from "../devices/waits.ts";

export const MAX_WAIT_SECONDS = 60;

const WAIT_HEADERS = { "x-push": "long-poll", "cache-control": "no-store" };
const noNews = () => new Response(null, { status: 204, headers: WAIT_HEADERS });
const news = (version: number) => {
  const text = `{"version":${version}}`;
  return new Response(text, { status: 200, headers: { ...WAIT_HEADERS, "content-type": "application/json", "content-length": String(text.length) } });
};
/** A held wait of a device revoked meanwhile: refused as its next request would be. */
const revoked = () => Response.json({ error: DEVICE_REVOKED }, { status: 403, headers: WAIT_HEADERS });
/** One function for every wait (not a closure per held request). */
const answerOf = (version: WaitEnd) => (version === null ? revoked() : version === undefined ? noNews() : news(version));

/**
 * Holds until news or the timeout; the request is over when the connection closes first (its
 * answer then goes nowhere). A 400 for a bad query.
 */
export function waitForNews(gw: Gateway, device: string, afterParam: string | undefined, timeoutParam: string | undefined, conn: ClientConnection | undefined): Response | Promise<Response> {
  const after = Number(afterParam ?? "0");
  const timeout = Number(timeoutParam ?? "30");
  if (!Number.isInteger(after) || after < 0) return Response.json({ error: "Invalid after: expected the timestamp version the device trusts" }, { status: 400 });
  if (!Number.isFinite(timeout) || timeout < 0 || timeout > MAX_WAIT_SECONDS)
    return Response.json({ error: `Invalid timeout: expected 0 to ${MAX_WAIT_SECONDS} seconds` }, { status: 400 });
  const watch = watchOf(gw);
  // A probe (timeout 0: is the gateway back?) is answered at once and never held.
  if (!conn || timeout === 0 || conn.hold()) return watch.waitAfter(after, timeout * 1000, conn, device).then(answerOf);
  // The transport keeps a share of its connections for check-ins: past it, the device polls
  // instead; news there already is still told at once (else the device would poll it out).
  return watch.waitAfter(after, 0).then((version) =>
    version !== undefined
      ? answerOf(version)
      : Response.json({ error: "This gateway holds as many push connections as it may: poll instead" }, { status: 503, headers: { ...WAIT_HEADERS, "retry-after": String(MAX_WAIT_SECONDS) } }),
  );
}

export const repoWait = new Hono<GatewayEnv>().get("/repo/wait", requireDevice, (c) => waitForNews(c.var.gw, c.var.device.uuid, c.req.query("after"), c.req.query("timeout"), c.env?.connection));
