/**
 * Migration 38 on a database migrated before it, SQLite and PostgreSQL: the devices an update
 * cancelled on the device had left "failed" (the trigger of migration 34 kept the cancel's
 * details as status_detail) read "cancelled", and every other status stays as it was.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { Database } from "bun:sqlite";
import { startPostgres, type PostgresHandle } from "../../test/harness/postgres.ts";
import { MIGRATIONS, MIGRATIONS_TABLE, splitStatements } from "./_migrations.ts";
import { PostgresStore } from "./postgres.ts";
import { SqliteStore } from "./sqlite.ts";
import type { Store } from "./types.ts";

/** Rows as the trigger before migration 38 left them: [uuid, status, status_detail]. */
const BEFORE: [string, string, string | null][] = [
  ["cancel-install", "failed", JSON.stringify({ canceled: true, restoredTo: "amd64-linux-1", restoreOk: true })],
  ["cancel-download", "failed", '{"canceled":true}'],
  ["cancel-unrestored", "failed", JSON.stringify({ canceled: true, restoredTo: null, restoreOk: false, restoreError: "no such image" })],
  ["failed", "failed", "registry said 404"],
  ["failed-not-cancel", "failed", '{"canceled":false,"phase":"fetch","error":"registry said 404"}'],
  ["rolled-back", "rolled-back", '{"phase":"start","rollbackOk":true}'],
  ["up-to-date", "up-to-date", null],
];

const AFTER = {
  "cancel-install": { status: "cancelled", statusDetail: null },
  "cancel-download": { status: "cancelled", statusDetail: null },
  "cancel-unrestored": { status: "failed", statusDetail: JSON.stringify({ canceled: true, restoredTo: null, restoreOk: false, restoreError: "no such image" }) },
  failed: { status: "failed", statusDetail: "registry said 404" },
  "failed-not-cancel": { status: "failed", statusDetail: '{"canceled":false,"phase":"fetch","error":"registry said 404"}' },
  "rolled-back": { status: "rolled-back", statusDetail: '{"phase":"start","rollbackOk":true}' },
  "up-to-date": { status: "up-to-date", statusDetail: null },
};

const BEFORE_38 = MIGRATIONS.filter((m) => m.version < 38);
const AT = "2026-12-01T00:00:00.000Z";

async function statuses(s: Store) {
  const { devices } = await s.searchDevices({ offlineBefore: "2000-01-01T00:00:00.000Z", sort: "uuid", limit: 100 });
  const at = new Set(devices.map((d) => d.statusAt));
  return { statuses: Object.fromEntries(devices.map((d) => [d.uuid, { status: d.status as string, statusDetail: d.statusDetail }])), at: [...at] };
}

describe("migration 38", () => {
  test("SQLite: devices a cancel left failed read cancelled; the others keep their status, detail and time", async () => {
    const db = new Database(":memory:", { strict: true });
    db.exec(MIGRATIONS_TABLE);
    for (const m of BEFORE_38) {
      db.exec(m.sqlite);
      db.query("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)").run(m.version, m.description, AT);
    }
    for (const [uuid, status, detail] of BEFORE) {
      db.query(
        "INSERT INTO devices (uuid, name, hardware_id, factory, tags, cert_serial, created_at, status, status_detail, status_at) VALUES (?, ?, 'hw', 'main', '[]', '01', ?, ?, ?, ?)",
      ).run(uuid, uuid, AT, status, detail, AT);
    }
    const s = new SqliteStore(db);
    try {
      expect(await statuses(s)).toEqual({ statuses: AFTER, at: [AT] });
    } finally {
      await s.close();
    }
  });

  describe("PostgreSQL", () => {
    let pg: PostgresHandle;
    beforeAll(async () => {
      pg = await startPostgres();
    }, 60_000);
    afterAll(async () => {
      await pg?.stop();
    });

    test("devices a cancel left failed read cancelled; the others keep their status, detail and time", async () => {
      const url = await pg.createDatabase(`m38_${process.pid}`);
      const sql = new SQL({ url, max: 1 });
      try {
        await sql.unsafe(MIGRATIONS_TABLE);
        for (const m of BEFORE_38) {
          for (const stmt of splitStatements(m.postgres)) await sql.unsafe(stmt);
          await sql.unsafe("INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)", [m.version, m.description, AT]);
        }
        for (const [uuid, status, detail] of BEFORE) {
          await sql.unsafe(
            "INSERT INTO devices (uuid, name, hardware_id, factory, tags, cert_serial, created_at, status, status_detail, status_at) VALUES ($1, $1, 'hw', 'main', '[]', '01', $2, $3, $4, $2)",
            [uuid, AT, status, detail],
          );
        }
      } finally {
        await sql.close();
      }
      const s = await PostgresStore.connect(url, { max: 2 });
      try {
        expect(await statuses(s)).toEqual({ statuses: AFTER, at: [AT] });
      } finally {
        await s.close();
      }
    });
  });
});
