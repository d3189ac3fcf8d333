import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { FleetDeviceList, FleetSummary } from "../../lib/api/admin.ts";
import { anEvent, json, testGateway } from "../../test/gateway/_fixture.ts";
import { Sightings } from "../devices/sightings.ts";

let t: Awaited<ReturnType<typeof testGateway>>;
const tokens: Record<"viewer" | "publish", string> = { viewer: "", publish: "" };

beforeAll(async () => {
  t = await testGateway();
  for (const role of ["viewer", "publish"] as const) {
    const res = await t.app.request("/admin/tokens", t.admin(json({ role })));
    tokens[role] = ((await res.json()) as { token: string }).token;
  }
});
afterAll(() => t.close());

const as = (token: string, init: RequestInit = {}): RequestInit => ({
  ...init,
  headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...(init.headers as object) },
});

describe("GET /admin/fleet/devices", () => {
  test("answers a device's status from its events, with the store time in Server-Timing", async () => {
    const d = await t.register({ name: "fleet-failing" });
    const ev = await t.app.request(
      "/events",
      json([anEvent("f1", "EcuDownloadStarted"), anEvent("f2", "EcuDownloadCompleted", { success: false, details: "disk full" })]),
      { peer: d.peer },
    );
    expect(ev.status).toBeLessThan(300);
    const res = await t.app.request("/admin/fleet/devices?status=failed&q=fleet-fail", t.admin());
    expect(res.status).toBe(200);
    expect(res.headers.get("server-timing")).toMatch(/^db;dur=[0-9.]+$/);
    const body = (await res.json()) as FleetDeviceList;
    expect(body.devices.map((x) => [x.uuid, x.status, x.statusDetail])).toEqual([[d.uuid, "failed", "disk full"]]);
    expect(body.total).toBe(1);
  });

  test("refuses an unknown status or sort with 400", async () => {
    expect((await t.app.request("/admin/fleet/devices?status=broken", t.admin())).status).toBe(400);
    expect((await t.app.request("/admin/fleet/devices?sort=secret", t.admin())).status).toBe(400);
    expect((await t.app.request("/admin/fleet/devices?limit=-1", t.admin())).status).toBe(400);
  });
});

describe("GET /admin/fleet/summary", () => {
  test("counts this minute's device check-ins from the gateway's own request counters", async () => {
    const d = await t.register();
    const series = async () => ((await (await t.app.request("/admin/fleet/summary", t.admin())).json()) as FleetSummary).checkinsPerMinute;
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const before = await series();
    for (let i = 0; i < 3; i++) expect((await t.app.request("/repo/timestamp.json", {}, { peer: d.peer })).status).toBe(200);
    const after = await series();
    expect(after).toHaveLength(30);
    // Summed over the 30 minutes, so a minute turning between the reads does not matter (the gateway is younger than 30 min).
    expect(sum(after) - sum(before)).toBe(3);
  });
});

describe("viewer tokens", () => {
  test("read the fleet, devices, targets and tokens", async () => {
    for (const path of ["/admin/fleet/summary", "/admin/fleet/devices", "/admin/devices", "/admin/targets", "/admin/tokens"])
      expect([path, (await t.app.request(path, as(tokens.viewer))).status]).toEqual([path, 200]);
    const s = (await (await t.app.request("/admin/fleet/summary", as(tokens.viewer))).json()) as FleetSummary;
    expect(s.checkinsPerMinute).toHaveLength(30);
  });

  test("change nothing: revoke, tags, tokens and targets are refused with 403", async () => {
    const d = await t.register();
    const attempts: [string, RequestInit][] = [
      [`/admin/devices/${d.uuid}/revoke`, { method: "POST" }],
      [`/admin/devices/${d.uuid}/tags`, json({ tags: ["x"] }, "PUT")],
      ["/admin/tokens", json({ role: "admin" })],
      ["/admin/targets", json({ targets: {} })],
    ];
    for (const [path, init] of attempts) expect([path, (await t.app.request(path, as(tokens.viewer, init))).status]).toEqual([path, 403]);
    expect((await t.gw.store.getDevice(d.uuid))?.revokedAt).toBeNull();
  });

  test("a publish token may not read the fleet (it reads targets only)", async () => {
    expect((await t.app.request("/admin/fleet/devices", as(tokens.publish))).status).toBe(403);
    expect((await t.app.request("/admin/targets", as(tokens.publish))).status).toBe(200);
  });
});

describe("pending check-ins and the reads that list devices", () => {
  test("a refresh writes no check-in the next flush writes anyway, while a device's first check-in is listed as seen at once", async () => {
    const t2 = await testGateway();
    try {
      const { gw } = t2;
      gw.sightings = new Sightings(gw.store, 60_000); // a periodic flush, not due during the test: called below
      let writes = 0;
      const write = gw.store.recordSightings.bind(gw.store);
      gw.store.recordSightings = async (batch) => {
        writes++;
        return await write(batch);
      };
      const d = await t2.register({ name: "fleet-seen" });
      const listed = async () => ((await (await t2.app.request(`/admin/fleet/devices?uuid=${d.uuid}`, t2.admin())).json()) as FleetDeviceList).devices[0]!;
      const checkIn = async () => expect((await t2.app.request("/repo/timestamp.json", {}, { peer: d.peer })).status).toBe(200);
      expect((await listed()).lastSeen).toBeNull();

      await checkIn();
      const first = (await listed()).lastSeen;
      expect(first).toBeString(); // its first: written for the read
      expect(writes).toBe(1);

      // Its next poll, after the device cache's few seconds: the row it finds shows it seen.
      gw.devices.invalidate(d.uuid);
      await Bun.sleep(5);
      await checkIn();
      expect(gw.sightings.pending).toBe(1);
      for (let i = 0; i < 3; i++) expect((await listed()).lastSeen).toBe(first); // the dashboard's refreshes
      expect(((await (await t2.app.request(`/admin/devices/${d.uuid}`, t2.admin())).json()) as { lastSeen: string | null }).lastSeen).toBe(first); // its page, devices show
      expect(writes).toBe(1);

      await gw.sightings.flush(); // the periodic flush
      expect(writes).toBe(2);
      expect(Date.parse((await listed()).lastSeen!)).toBeGreaterThan(Date.parse(first!));
      await gw.sightings.stop();
    } finally {
      await t2.close();
    }
  });
});
