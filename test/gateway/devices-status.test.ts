/**
 * `gateway devices list` and `devices show` say a device's status as the dashboard does
 * (rolled-back, with the last failure's reason), an update's failure reason, and a cancelled
 * update as CANCELLED, not FAILED (and the dashboard's timeline as cancelled); a device that never
 * checked in as never-seen, not offline.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { registerDevice, type TlsDevice } from "./_register.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { dashboardClient } from "../ui/_http.ts";
import { gatewayRun } from "../harness/cli.ts";

let g: GatewayHandle;

const cli = (...args: string[]) => gatewayRun(args);

beforeAll(async () => {
  g = await startGateway();
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 120_000);

let seq = 0;
const event = (correlationId: string, type: string, fields: Record<string, unknown> = {}) => ({
  id: `e-${Date.now()}-${seq++}`,
  deviceTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
  eventType: { id: type, version: 2 },
  event: { correlationId, targetName: "amd64-linux-2", version: "2", ...fields },
});

async function sendEvents(d: TlsDevice, events: unknown[]) {
  const res = await d.fetch(`${g.url}/events`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(events) });
  expect(res.ok).toBe(true);
}

describe("devices list and show", () => {
  test("say the dashboard's status and last failure, and a cancelled update as CANCELLED", async () => {
    const failed = await registerDevice(g.url, g.adminToken, g.caPem);
    const cancelled = await registerDevice(g.url, g.adminToken, g.caPem);
    const unhealthy = JSON.stringify({ phase: "start", error: 'service "web" is unhealthy', rollbackOk: true, rolledBackTo: "amd64-linux-1" });
    await sendEvents(failed, [
      event("upd-1", "EcuDownloadStarted"),
      event("upd-1", "EcuDownloadCompleted", { success: true }),
      event("upd-1", "EcuInstallationStarted"),
      event("upd-1", "EcuInstallationCompleted", { success: false, details: unhealthy }),
    ]);
    await sendEvents(cancelled, [
      event("upd-c", "EcuDownloadStarted"),
      event("upd-c", "EcuInstallationCompleted", { success: false, details: JSON.stringify({ canceled: true }) }),
    ]);
    // The dashboard's view of the first device, which the CLI must agree with.
    const fleet = (await (await g.adminFetch(`/admin/fleet/devices?uuid=${failed.uuid}`)).json()) as { devices: { status: string }[] };
    expect(fleet.devices[0]!.status).toBe("rolled-back");

    const list = cli("devices", "list", "--data", g.dataDir);
    expect(list.code).toBe(0);
    const row = list.out.split("\n").find((l) => l.startsWith(failed.uuid))!;
    expect(row).toMatch(/ rolled-back$/);

    const show = cli("devices", "show", "--data", g.dataDir, failed.uuid);
    expect(show.code).toBe(0);
    expect(show.out).toMatch(/^status: +rolled-back since \S+$/m);
    expect(show.out).toContain('last failure: start: service "web" is unhealthy');
    expect(show.out).toContain('update upd-1: amd64-linux-2 FAILED: start: service "web" is unhealthy');

    const showCancelled = cli("devices", "show", "--data", g.dataDir, cancelled.uuid);
    expect(showCancelled.code).toBe(0);
    expect(showCancelled.out).toContain("update upd-c: amd64-linux-2 CANCELLED");
    expect(showCancelled.out).not.toContain("FAILED");

    // The dashboard's timeline says the same of the cancelled update.
    const b = dashboardClient(g);
    expect((await b.signIn(g.adminToken)).status).toBe(303);
    const page = (await b.request(`/ui/devices/${cancelled.uuid}`)).html;
    const section = /<section[^>]*data-update="upd-c".*?<\/section>/s.exec(page)![0];
    expect(section).toContain('<span class="badge s-offline">cancelled</span>');
    expect(section).toContain("Cancelled by the user");
    expect(section).not.toContain("failed");

    const json = JSON.parse(cli("devices", "show", "--data", g.dataDir, failed.uuid, "--format", "json").out) as { status: string; statusDetail: string };
    expect(json.status).toBe("rolled-back");
    expect(json.statusDetail).toBe(unhealthy);
  }, 60_000);

  test("say never-seen, not offline, of a device registered long ago that never checked in, and the dashboard filters and counts it so", async () => {
    if (process.env.OTA_TEST_DB === "postgres") return; // its registration is made an hour old in the SQLite file; the store contract runs both
    const never = await registerDevice(g.url, g.adminToken, g.caPem);
    const quiet = await registerDevice(g.url, g.adminToken, g.caPem);
    expect((await quiet.fetch(`${g.url}/repo/timestamp.json`)).ok).toBe(true);
    const cli0 = cli("devices", "list", "--data", g.dataDir); // writes the check-in (the list flushes sightings)
    expect(cli0.out.split("\n").find((l) => l.startsWith(never.uuid))).toMatch(/ registered$/);
    // An hour ago, as if registered then: past the 10 minutes that make a device offline.
    const hourAgo = new Date(Date.now() - 3600_000).toISOString();
    const db = new Database(join(g.dataDir, "gateway.db"));
    db.query("UPDATE devices SET created_at = ?1 WHERE uuid = ?2").run(hourAgo, never.uuid);
    db.query("UPDATE devices SET created_at = ?1, last_seen = ?1 WHERE uuid = ?2").run(hourAgo, quiet.uuid);
    db.close();

    const rows = cli("devices", "list", "--data", g.dataDir).out.split("\n");
    expect(rows.find((l) => l.startsWith(never.uuid))).toMatch(/ never-seen$/);
    expect(rows.find((l) => l.startsWith(quiet.uuid))).toMatch(/ offline$/);
    expect(cli("devices", "show", "--data", g.dataDir, never.uuid).out).toMatch(/^status: +never-seen$/m);

    const b = dashboardClient(g);
    expect((await b.signIn(g.adminToken)).status).toBe(303);
    const listed = (await b.request("/ui/devices?status=never-seen")).html;
    expect(listed).toContain(never.uuid);
    expect(listed).not.toContain(quiet.uuid);
    expect((await b.request("/ui/devices?status=offline")).html).not.toContain(never.uuid);
    const overview = (await b.request("/ui/")).html;
    expect(overview).toContain('<td data-status-count="never-seen">1</td>');
  }, 60_000);
});
