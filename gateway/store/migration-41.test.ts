/**
 * Migration 41: the device status trigger reads an event's type once per status it works out.
 * A database migrated before it holds the trigger that read the type once per branch (25 times
 * for an "updating" event on SQLite); after it, the trigger is today's, and every kind of event
 * leaves the device the status and detail it left before, on SQLite and PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { Database } from "bun:sqlite";
import { startPostgres, type PostgresHandle } from "../../test/harness/postgres.ts";
import { MIGRATIONS, MIGRATIONS_TABLE } from "./_migrations.ts";
import { PostgresStore } from "./postgres.ts";
import { SqliteStore } from "./sqlite.ts";

const AT = "2026-12-01T00:00:00.000Z";

const rollback = JSON.stringify({ phase: "start", error: "unhealthy", rollbackOk: true });
const unrestored = JSON.stringify({ canceled: true, restoredTo: null, restoreOk: false });

/** One event per device, on a device "registered" before it: [device, event type, event fields, status after, detail after]. */
const CASES: [string, string | undefined, Record<string, unknown>, string, string | null][] = [
  ["download-started", "EcuDownloadStarted", {}, "updating", null],
  ["install-started", "EcuInstallationStarted", {}, "updating", null],
  ["install-applied", "EcuInstallationApplied", {}, "updating", null],
  ["download-done", "EcuDownloadCompleted", { success: true }, "updating", null],
  ["download-no-success", "EcuDownloadCompleted", {}, "updating", null],
  ["download-failed", "EcuDownloadCompleted", { success: false, details: "registry said 404" }, "failed", "registry said 404"],
  ["download-cancelled", "EcuDownloadCompleted", { success: false, details: '{"canceled":true}' }, "cancelled", null],
  ["download-rollback-text", "EcuDownloadCompleted", { success: false, details: rollback }, "failed", rollback],
  ["install-done", "EcuInstallationCompleted", { success: true }, "up-to-date", null],
  ["install-failed", "EcuInstallationCompleted", { success: false, details: "boom" }, "failed", "boom"],
  ["install-rolled-back", "EcuInstallationCompleted", { success: false, details: rollback }, "rolled-back", rollback],
  ["install-rolled-back-no-success", "EcuInstallationCompleted", { details: rollback }, "rolled-back", rollback],
  ["install-cancelled", "EcuInstallationCompleted", { success: false, details: '{"canceled":true,"restoreOk":true}' }, "cancelled", null],
  ["install-cancel-unrestored", "EcuInstallationCompleted", { success: false, details: unrestored }, "failed", unrestored],
  ["install-no-success", "EcuInstallationCompleted", { details: "nothing said" }, "registered", null],
  ["other-type", "DeviceRebooted", { success: false, details: "x" }, "registered", null],
  ["no-type", undefined, { success: true }, "registered", null],
];

const body = (type: string | undefined, fields: Record<string, unknown>) =>
  JSON.stringify({ id: "e", deviceTime: AT, ...(type ? { eventType: { id: type, version: 2 } } : {}), event: { correlationId: "c", ...fields } });

const EXPECTED = Object.fromEntries(CASES.map(([uuid, , , status, detail]) => [uuid, { status, detail }]));

/**
 * The trigger as migrations 34 and 38 made it before 41 (a branch per type test, the type read in
 * each): what a database migrated before 41 holds.
 */
function triggerBefore41(): string {
  const f = (path: string) => `json_extract(NEW.body, '${path}')`;
  const type = f("$.eventType.id");
  const details = `coalesce(${f("$.event.details")}, '')`;
  const cancelled = `(${details} LIKE '%"canceled":true%' AND ${details} NOT LIKE '%"restoreOk":false%')`;
  const status = `CASE
      WHEN ${type} = 'EcuInstallationCompleted' AND ${f("$.event.success")} = 1 THEN 'up-to-date'
      WHEN ${type} IN ('EcuInstallationCompleted', 'EcuDownloadCompleted') AND ${f("$.event.success")} = 0 AND ${cancelled} THEN 'cancelled'
      WHEN ${type} = 'EcuInstallationCompleted' AND ${details} LIKE '%"rollbackOk":true%' THEN 'rolled-back'
      WHEN ${type} IN ('EcuInstallationCompleted', 'EcuDownloadCompleted') AND ${f("$.event.success")} = 0 THEN 'failed'
      WHEN ${type} IN ('EcuDownloadStarted', 'EcuDownloadCompleted', 'EcuInstallationStarted', 'EcuInstallationApplied') THEN 'updating'
    END`;
  const detail = `CASE WHEN ${status} IN ('failed', 'rolled-back') THEN ${f("$.event.details")} END`;
  return `DROP TRIGGER events_device_status;
CREATE TRIGGER events_device_status AFTER INSERT ON events
WHEN ${status} IS NOT NULL
BEGIN
  UPDATE devices SET status = ${status}, status_detail = ${detail}, status_at = NEW.received_at
  WHERE uuid = NEW.device_uuid AND (status IS NOT ${status} OR status_detail IS NOT ${detail});
END`;
}

/** Registers every case's device (prefixed), stores its event, and reads back status and detail. */
function applySqlite(db: Database, prefix: string) {
  for (const [uuid, type, fields] of CASES) {
    db.query("INSERT INTO devices (uuid, name, hardware_id, factory, tags, cert_serial, created_at) VALUES (?, ?, 'hw', 'main', '[]', '01', ?)").run(prefix + uuid, prefix + uuid, AT);
    db.query("INSERT INTO events (id, device_uuid, received_at, body) VALUES ('e', ?, ?, ?)").run(prefix + uuid, AT, body(type, fields));
  }
  const rows = db.query<{ uuid: string; status: string; status_detail: string | null }, [string]>("SELECT uuid, status, status_detail FROM devices WHERE uuid LIKE ? || '%'").all(prefix);
  return Object.fromEntries(rows.map((r) => [r.uuid.slice(prefix.length), { status: r.status, detail: r.status_detail }]));
}

/** How often the SQLite trigger reads the event's type: once per status it works out (five) since 41. */
const typeReads = (db: Database) =>
  db.query<{ sql: string }, []>("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'events_device_status'").get()!.sql.split("$.eventType.id").length - 1;

describe("migration 41", () => {
  test("SQLite: a database migrated before it gets the trigger that reads the type once per status; every kind of event leaves the status it left before", async () => {
    const db = new Database(":memory:", { strict: true });
    db.exec(MIGRATIONS_TABLE);
    for (const m of MIGRATIONS.filter((m) => m.version < 41)) {
      db.exec(m.sqlite);
      db.query("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)").run(m.version, m.description, AT);
    }
    db.exec(triggerBefore41());
    expect(typeReads(db)).toBe(25);
    expect(applySqlite(db, "before-")).toEqual(EXPECTED);
    const s = new SqliteStore(db); // migrates
    try {
      expect(typeReads(db)).toBe(5);
      expect(applySqlite(db, "after-")).toEqual(EXPECTED);
    } finally {
      await s.close();
    }
  });

  test("SQLite: a new database holds the same trigger", () => {
    const db = new Database(":memory:", { strict: true });
    for (const m of MIGRATIONS) db.exec(m.sqlite);
    expect(typeReads(db)).toBe(5);
    expect(applySqlite(db, "new-")).toEqual(EXPECTED);
    db.close();
  });

  describe("PostgreSQL", () => {
    let pg: PostgresHandle;
    beforeAll(async () => {
      pg = await startPostgres();
    }, 60_000);
    afterAll(async () => {
      await pg?.stop();
    });

    test("every kind of event leaves the status it left before", async () => {
      const url = await pg.createDatabase(`m41_${process.pid}`);
      const s = await PostgresStore.connect(url, { max: 2 }); // migrates
      await s.close();
      const sql = new SQL({ url, max: 1 });
      try {
        for (const [uuid, type, fields] of CASES) {
          await sql.unsafe("INSERT INTO devices (uuid, name, hardware_id, factory, tags, cert_serial, created_at) VALUES ($1, $1, 'hw', 'main', '[]', '01', $2)", [uuid, AT]);
          await sql.unsafe("INSERT INTO events (id, device_uuid, received_at, body) VALUES ('e', $1, $2, $3)", [uuid, AT, body(type, fields)]);
        }
        const rows: { uuid: string; status: string; status_detail: string | null }[] = await sql.unsafe("SELECT uuid, status, status_detail FROM devices");
        expect(Object.fromEntries(rows.map((r) => [r.uuid, { status: r.status, detail: r.status_detail }]))).toEqual(EXPECTED);
      } finally {
        await sql.close();
      }
    });
  });
});
