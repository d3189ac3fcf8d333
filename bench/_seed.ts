/**
 * Seeding a gateway database for the fleet benchmarks: many filler devices in bulk (raw SQL,
 * one transaction per 50,000 on SQLite, one generate_series on PostgreSQL), and real devices
 * with keys and certificates from the factory CA that a load generator can check in as.
 *
 * @module
 */
import { Database } from "bun:sqlite";
import type { DataDir } from "../gateway/data-dir.ts";
import type { CertificateAuthority } from "../gateway/pki/ca.ts";
import { signDeviceCsr } from "../gateway/pki/ca.ts";
import { CA_FINGERPRINT_META, openStore } from "../gateway/store/open.ts";
import { SqliteStore } from "../gateway/store/sqlite.ts";
import type { Store } from "../gateway/store/types.ts";
import { makeDeviceCsr } from "../test/gateway/_device.ts";

/**
 * Inserts `count` devices named `seed-<i>` (uuid `seed-<hex i>`, tag "main", hwid amd64-linux)
 * into `db`: a SQLite file path (migrated here first) or a PostgreSQL URL (already migrated).
 */
export async function seedFillerDevices(db: string, count: number): Promise<void> {
  if (/^postgres(ql)?:/.test(db)) {
    const { SQL } = await import("bun");
    const sql = new SQL({ url: db, max: 1 });
    await sql.unsafe(
      `INSERT INTO devices (uuid, name, hardware_id, factory, tags, cert_serial, created_at)
       SELECT 'seed-' || lpad(to_hex(g), 8, '0'), 'seed-' || g, 'amd64-linux', 'main', '["main"]', upper(to_hex(g + 1)), now()::text
       FROM generate_series(0, $1::int - 1) AS g ON CONFLICT DO NOTHING`,
      [count],
    );
    await sql.close();
    return;
  }
  (await SqliteStore.open(db)).close();
  const sqlite = new Database(db);
  sqlite.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF");
  const ins = sqlite.prepare(
    "INSERT INTO devices (uuid, name, hardware_id, factory, tags, cert_serial, created_at) VALUES (?, ?, 'amd64-linux', 'main', '[\"main\"]', ?, ?)",
  );
  const now = new Date().toISOString();
  const BATCH = 50_000;
  for (let i = 0; i < count; i += BATCH) {
    sqlite.transaction(() => {
      for (let j = i; j < Math.min(count, i + BATCH); j++) ins.run(`seed-${j.toString(16).padStart(8, "0")}`, `seed-${j}`, (j + 1).toString(16).toUpperCase(), now);
    })();
  }
  sqlite.close();
}

/**
 * The store a benchmark's gateway will serve, `filler` devices seeded in bulk: the data dir's
 * SQLite file, or the PostgreSQL database `db`, bound to the data dir's CA as a gateway's first
 * start binds it (a data dir with a CA given a database bound to none is refused as a restore
 * whose pg_restore is missing: EmptyDatabaseError).
 */
export async function openSeededStore(data: DataDir, db: string | undefined, filler: number): Promise<Store> {
  if (!db) {
    await seedFillerDevices(data.dbPath, filler);
    return openStore(data.dbPath);
  }
  const store = await openStore(db);
  await store.claimMeta(CA_FINGERPRINT_META, data.ca.fingerprint);
  await seedFillerDevices(db, filler);
  return store;
}

/** A device a load generator can act as: its certificate and key (PEM). */
export interface IssuedDevice {
  uuid: string;
  cert: string;
  key: string;
}

/** Issues `n` real devices (key, CSR, certificate from `ca`) and stores them as `bench-<i>` with tag "main". */
export async function issueDevices(store: Store, ca: CertificateAuthority, n: number, log: (line: string) => void): Promise<IssuedDevice[]> {
  const devices: IssuedDevice[] = [];
  for (let i = 0; i < n; i++) {
    if (i && i % 2000 === 0) log(`issued ${i}/${n} device certificates`);
    const k = await makeDeviceCsr();
    const issued = await signDeviceCsr(ca, k.csrPem, { uuid: k.uuid, factory: "main" });
    await store.putDevice({ uuid: k.uuid, name: `bench-${i}`, hardwareId: "amd64-linux", factory: "main", tags: ["main"], certSerial: issued.serial });
    devices.push({ uuid: k.uuid, cert: issued.certPem, key: k.keyPem });
  }
  return devices;
}
