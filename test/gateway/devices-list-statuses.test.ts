/**
 * `gateway devices list` reads a page of devices with their statuses in one request to
 * GET /admin/fleet/devices (by uuid, after the last page's last), not one per device, and shows
 * every device's status, a cancelled update's included, also while devices register into the
 * page; the gateway's /metrics counts the requests.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { registerDevice, type TlsDevice } from "./_register.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { gatewayRun } from "../harness/cli.ts";
import { makeEvent } from "../../fioup/events/event.ts";
import type { EventTypeId } from "../../lib/api/index.ts";

let g: GatewayHandle;

beforeAll(async () => {
  g = await startGateway();
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 120_000);

/** An event of one update as fioup builds it. */
const event = (type: EventTypeId, extra: { success?: boolean; details?: unknown } = {}) =>
  makeEvent(type, { correlationId: "upd-1", targetName: "amd64-linux-2", version: "2" }, extra);

async function sendEvents(d: TlsDevice, events: unknown[]) {
  const res = await d.fetch(`${g.url}/events`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(events) });
  expect(res.ok).toBe(true);
}

/** GET /admin/fleet/devices requests this gateway has answered 200, from its /metrics. */
async function fleetReads(): Promise<number> {
  const text = await (await g.adminFetch("/metrics")).text();
  const m = /^gateway_requests_total\{route="\/admin\/fleet\/devices",status="200"\} (\d+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/** Runs `devices list` and answers its rows (uuid to STATUS) and how many fleet reads it made. */
async function list(...args: string[]) {
  const before = await fleetReads();
  const r = gatewayRun(["devices", "list", "--data", g.dataDir, ...args]);
  expect(r.code).toBe(0);
  const rows = r.out.split("\n").filter((l) => /^[0-9a-f]{8}-/.test(l));
  const statuses = Object.fromEntries(rows.map((l) => [l.split(/\s+/)[0]!, l.split(/\s+/).at(-1)!]));
  const next = /\(more: --after (\S+)\)/.exec(r.out)?.[1];
  return { statuses, next, reads: (await fleetReads()) - before };
}

describe("devices list", () => {
  test("shows the status of every device of a page with one status request per page", async () => {
    // More devices than the old batch of 8 status reads at once, over two pages.
    const devices = await Promise.all(Array.from({ length: 20 }, () => registerDevice(g.url, g.adminToken, g.caPem)));
    const [cancelled, updated, failed] = devices;
    await sendEvents(cancelled!, [event("EcuDownloadStarted"), event("EcuInstallationCompleted", { success: false, details: { canceled: true } })]);
    await sendEvents(updated!, [event("EcuDownloadStarted"), event("EcuInstallationCompleted", { success: true })]);
    await sendEvents(failed!, [event("EcuDownloadStarted"), event("EcuDownloadCompleted", { success: false, details: "registry said 404" })]);
    const expected = Object.fromEntries(devices.map((d) => [d.uuid, "registered"]));
    Object.assign(expected, { [cancelled!.uuid]: "cancelled", [updated!.uuid]: "up-to-date", [failed!.uuid]: "failed" });

    const first = await list("--limit", "12");
    expect(Object.keys(first.statuses).length).toBe(12);
    expect(first.next).toBeDefined();
    expect(first.reads).toBe(1);
    const second = await list("--limit", "12", "--after", first.next!);
    expect(Object.keys(second.statuses).length).toBe(8);
    expect(second.reads).toBe(1);
    expect({ ...first.statuses, ...second.statuses }).toEqual(expected);

    const all = await list();
    expect(all.statuses).toEqual(expected);
    expect(all.reads).toBe(1);
  }, 120_000);

  test("GET /admin/fleet/devices answers a bad uuid range with 400 and says which parameter", async () => {
    const res = await g.adminFetch(`/admin/fleet/devices?uuidFrom=${"a".repeat(129)}`);
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("uuidFrom");
  });

  test("gives every row of a full page its status while devices register into the page", async () => {
    if (process.env.OTA_TEST_DB === "postgres") return; // devices are written straight into the SQLite file, fast
    const file = join(g.dataDir, "gateway.db");
    const fill = (db: Database, n: number) => {
      const q = db.query("INSERT INTO devices (uuid, name, hardware_id, factory, tags, cert_serial, created_at) VALUES (?, 'bulk', 'amd64-linux', 'main', '[]', 'AB', ?)");
      db.transaction(() => {
        for (let i = 0; i < n; i++) q.run(crypto.randomUUID(), new Date().toISOString());
      })();
    };
    const db = new Database(file);
    db.exec("PRAGMA busy_timeout = 5000");
    fill(db, 1000);
    db.close();
    // Registrations coming in all the while, anywhere in the uuid order, as a busy factory's would.
    const writer = Bun.spawn(
      [
        process.execPath,
        "-e",
        `const { Database } = require("bun:sqlite");
         const db = new Database(${JSON.stringify(file)}); db.exec("PRAGMA busy_timeout = 5000");
         const q = db.query("INSERT INTO devices (uuid, name, hardware_id, factory, tags, cert_serial, created_at) VALUES (?, 'new', 'amd64-linux', 'main', '[]', 'AB', ?)");
         for (;;) { db.transaction(() => { for (let i = 0; i < 10; i++) q.run(crypto.randomUUID(), new Date().toISOString()); })(); Bun.sleepSync(1); }`,
      ],
      { stdout: "ignore", stderr: "inherit" },
    );
    try {
      for (let i = 0; i < 5; i++) {
        const r = gatewayRun(["devices", "list", "--data", g.dataDir, "--limit", "1000"]);
        expect(r.code).toBe(0);
        const rows = r.out.split("\n").filter((l) => /^[0-9a-f]{8}-/.test(l));
        expect(rows.length).toBe(1000);
        expect(rows.filter((l) => !/ (registered|up-to-date|failed|cancelled)$/.test(l))).toEqual([]);
      }
    } finally {
      writer.kill();
      await writer.exited;
    }
  }, 120_000);
});
