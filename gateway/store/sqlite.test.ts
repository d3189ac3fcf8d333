import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { storeContract, aDevice } from "./_contract.ts";
import { MIGRATIONS, MIGRATIONS_TABLE } from "./_migrations.ts";
import { SqliteStore } from "./sqlite.ts";

describe("SqliteStore", () => {
  storeContract(async () => SqliteStore.open(":memory:"));
});

describe("SqliteStore on a file (events committed by the writer thread)", () => {
  const opened: SqliteStore[] = [];
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "gw-sqlite-file-"));
  });
  afterAll(async () => {
    for (const s of opened) await s.close();
    await rm(dir, { recursive: true, force: true });
  });
  let n = 0;
  storeContract(async () => {
    const s = SqliteStore.open(join(dir, `c${n++}.db`));
    opened.push(s);
    return s;
  });

  test("reopening a database file keeps data and does not re-run migrations", async () => {
    const dir = await mkdtemp(join(tmpdir(), "gw-sqlite-"));
    try {
      const path = join(dir, "gateway.db");
      const a = SqliteStore.open(path);
      const d = aDevice();
      await a.putDevice(d);
      await a.close();
      const b = SqliteStore.open(path);
      expect((await b.getDevice(d.uuid))?.uuid).toBe(d.uuid);
      await b.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("SqliteStore migration 3 (token limits, device-chosen tags, API tokens)", () => {
  test("tokens made before it keep no use limit; devices keep their tags fixed", async () => {
    const db = new Database(":memory:", { strict: true });
    db.exec(MIGRATIONS_TABLE);
    for (const m of MIGRATIONS.filter((m) => m.version <= 2)) {
      db.exec(m.sqlite);
      db.query("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)").run(m.version, m.description, "t");
    }
    db.query("INSERT INTO registration_tokens (id, secret_hash, tags, hardware_id, created_at, expires_at, uses) VALUES ('old', 'h', '[]', NULL, 't', '2099-01-01T00:00:00.000Z', 11)").run();
    db.query("INSERT INTO devices (uuid, name, hardware_id, factory, tags, cert_serial, created_at) VALUES ('d', 'n', 'hw', 'main', '[\"prod\"]', '01', 't')").run();
    const s = new SqliteStore(db);
    expect(await s.getRegistrationTokenByHash("h")).toMatchObject({ uses: 11, maxUses: null, allowDeviceTags: false, revokedAt: null, name: null });
    expect(await s.claimTokenUse("old", new Date().toISOString())).toBe(true);
    expect(await s.getDevice("d")).toMatchObject({ tags: ["prod"], tagsFromDevice: false });
    expect(await s.listApiTokens()).toEqual([]);
    await s.close();
  });
});
