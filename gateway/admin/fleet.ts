/**
 * /admin/fleet: the dashboard's views of the fleet, for any API caller that may read
 * (admin or viewer; bodies: lib/api/admin.ts). `GET /admin/fleet/devices` pages, sorts and
 * filters devices in the database; `GET /admin/fleet/summary` counts them by status and
 * target and adds the gateway's own check-ins per minute. Both answer `Server-Timing: db`
 * with the store's time, so the 100,000-device budget can be checked from outside.
 *
 * @module
 */
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { DEVICE_PAGE_MAX, FleetDeviceQuery, type FleetDeviceList, type FleetSummary } from "../../lib/api/admin.ts";
import type { Gateway, GatewayEnv } from "../env.ts";
import { groupQuery, parseLabel } from "../fleet/query.ts";
import type { FleetQuery } from "../store/types.ts";
import { describeSchemaProblem } from "../../lib/api/schema-problem.ts";

/** How many minutes of check-in history the summary keeps. */
const MINUTES = 30;

/**
 * Check-ins per minute from the gateway's request counters: devices check in by fetching
 * TUF metadata (`/repo/...`), so the count of those requests, sampled every few seconds
 * and bucketed by minute, is the check-in rate this replica served.
 */
class CheckinHistory {
  readonly #gw: Gateway;
  readonly #perMinute = new Map<number, number>();
  #last: number;

  constructor(gw: Gateway) {
    this.#gw = gw;
    this.#last = this.#total();
    const timer = setInterval(() => this.sample(), 5000);
    timer.unref?.();
  }

  #total() {
    return this.#gw.metrics.requestsWhere((route, status) => route.startsWith("/repo") && status < 400);
  }

  sample(now = Date.now()) {
    const total = this.#total();
    const minute = Math.floor(now / 60_000);
    this.#perMinute.set(minute, (this.#perMinute.get(minute) ?? 0) + total - this.#last);
    this.#last = total;
    for (const m of this.#perMinute.keys()) if (m <= minute - MINUTES) this.#perMinute.delete(m);
  }

  series(now = Date.now()): number[] {
    this.sample(now);
    const minute = Math.floor(now / 60_000);
    return Array.from({ length: MINUTES }, (_, i) => this.#perMinute.get(minute - MINUTES + 1 + i) ?? 0);
  }
}

const histories = new WeakMap<Gateway, CheckinHistory>();
const historyOf = (gw: Gateway) => {
  let h = histories.get(gw);
  if (!h) histories.set(gw, (h = new CheckinHistory(gw)));
  return h;
};

/** Seconds without a check-in after which a device counts as offline (never-seen, if it never checked in): three polls, at least 10 minutes. */
export const offlineAfterSeconds = (gw: Gateway) => Math.max(3 * gw.pollingSeconds, 600);

const checkQuery = TypeCompiler.Compile(FleetDeviceQuery);

/** Mounted under /admin after requireApiToken; starts the gateway's check-in history. */
export function adminFleet(gw: Gateway) {
  historyOf(gw);
  return new Hono<GatewayEnv>()
    .get("/fleet/devices", async (c) => {
      // An empty value is no filter, as a form sends a field left blank (`?status=&sort=`).
      const q = Object.fromEntries(Object.entries(c.req.query()).filter(([, v]) => v !== ""));
      if (!checkQuery.Check(q)) {
        throw new HTTPException(400, { message: `Invalid query: ${describeSchemaProblem(checkQuery, q, "the query")}` });
      }
      const now = Date.now();
      const ago = (s: string | undefined) => (s === undefined ? undefined : new Date(now - Number(s) * 1000).toISOString());
      const limit = Math.min(Number(q.limit ?? 50) || 50, DEVICE_PAGE_MAX);
      const offset = Number(q.offset ?? 0);
      const fleet: FleetQuery[] = [];
      if (q.label) {
        const [key, value] = parseLabel(q.label);
        fleet.push({ labels: { [key]: value } });
      }
      if (q.group) {
        const g = await c.var.gw.store.getGroup(q.group);
        if (!g) throw new HTTPException(400, { message: `Unknown group "${q.group}"` });
        fleet.push(groupQuery(g));
      }
      // Check-ins are written once a second in a batch: one that changed a device (its first, a new
      // target...) is written now, so the list agrees with `devices show` (GET /admin/devices/:uuid
      // does the same); a repeat's last-seen time waits for the batch (settled()).
      await c.var.gw.sightings.settled();
      const t0 = performance.now();
      const page = await c.var.gw.store.searchDevices({
        fleet,
        text: q.q || undefined,
        uuid: q.uuid || undefined,
        uuidFrom: q.uuidFrom,
        uuidTo: q.uuidTo,
        uuidAfter: q.after,
        tag: q.tag || undefined,
        hardwareId: q.hwid || undefined,
        target: q.target || undefined,
        status: q.status,
        seenSince: ago(q.seenWithin),
        unseenSince: ago(q.unseenFor),
        offlineBefore: new Date(now - offlineAfterSeconds(c.var.gw) * 1000).toISOString(),
        sort: q.sort,
        desc: q.dir === "desc",
        limit,
        offset,
        // Paging by uuid (`devices list`): no count, which would scan the rest of the fleet at every page.
        count: q.after === undefined,
        // The dashboard says how many of a group's or a tag's devices are revoked (as a group or rollout counts none);
        // by a tag the store counts too those listed only for following it (reportedOnly).
        countRevoked: !!(q.group || q.tag) && !q.status,
      });
      c.header("server-timing", `db;dur=${(performance.now() - t0).toFixed(1)}`);
      return c.json({ ...page, offset, limit } satisfies FleetDeviceList);
    })
    .get("/fleet/summary", async (c) => {
      const gw = c.var.gw;
      const t0 = performance.now();
      const after = offlineAfterSeconds(gw);
      const counts = await gw.store.fleetSummary(new Date(Date.now() - after * 1000).toISOString(), 10);
      c.header("server-timing", `db;dur=${(performance.now() - t0).toFixed(1)}`);
      return c.json({ ...counts, byStatus: counts.byStatus as Record<string, number>, checkinsPerMinute: historyOf(gw).series(), offlineAfterSeconds: after } satisfies FleetSummary);
    });
}
