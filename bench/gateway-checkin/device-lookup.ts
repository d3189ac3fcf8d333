/**
 * What a device-cache miss costs the main thread: the gateway's `SELECT * FROM devices WHERE
 * uuid = ?` on a file of --devices filler devices plus 10,000 random ones, timed around the call
 * alone, while a second connection commits (as the SQLite writer thread does every few
 * milliseconds under load) before every lookup, before every fifth, or never. In WAL mode a
 * connection drops its page cache whenever another connection has committed, so a lookup after a
 * commit reads its pages again. Against that are measured the alternatives one might try:
 * `PRAGMA mmap_size` on the reading connection, and the devices table rebuilt `WITHOUT ROWID`
 * (one B-tree descent instead of the uuid index's then the table's). Variants alternate, best of
 * --rounds. Last, lookups made in batches of 1, 4 and 16 after a commit, one statement per device
 * against one `IN` read per batch (Store.getDevices, as the device cache reads the misses of one
 * event-loop turn).
 *
 * Usage: bun bench/gateway-checkin/device-lookup.ts [--devices 1000000] [--lookups 20000] [--rounds 3]
 *
 * @module
 */
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { tempDir } from "../../test/harness/tmp.ts";
import { seedFillerDevices } from "../_seed.ts";
import { benchArgs } from "../_args.ts";

const { values } = benchArgs({
  options: {
    devices: { type: "string", default: "1000000" },
    lookups: { type: "string", default: "20000" },
    rounds: { type: "string", default: "3" },
  },
});
const DEVICES = Number(values.devices);
const LOOKUPS = Number(values.lookups);
const ROUNDS = Number(values.rounds);
for (const [name, v] of [["--devices", DEVICES], ["--lookups", LOOKUPS], ["--rounds", ROUNDS]] as const) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`${name} takes a whole number of at least 1`);
    process.exit(2);
  }
}

const path = join(await tempDir("bench-device-lookup-"), "gateway.db");
console.error(`seeding ${DEVICES} filler devices and 10,000 random ones...`);
await seedFillerDevices(path, DEVICES);
const uuids = Array.from({ length: 10_000 }, () => crypto.randomUUID());
{
  const db = new Database(path);
  db.exec("PRAGMA journal_mode = WAL");
  const ins = db.prepare("INSERT INTO devices (uuid, name, hardware_id, factory, tags, cert_serial, created_at) VALUES (?, ?, 'amd64-linux', 'main', '[\"main\"]', ?, ?)");
  const now = new Date().toISOString();
  db.transaction(() => uuids.forEach((u, i) => ins.run(u, `bench-${i}`, String(i + 1), now)))();
  // The same table WITHOUT ROWID, from the schema the migrations made.
  const { sql } = db.query("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'devices'").get() as { sql: string };
  db.exec(`${sql.replace(/^CREATE TABLE devices/, "CREATE TABLE devices_without_rowid").trimEnd()} WITHOUT ROWID`);
  db.exec("INSERT INTO devices_without_rowid SELECT * FROM devices; PRAGMA wal_checkpoint(TRUNCATE)");
  db.close();
}

const writer = new Database(path);
writer.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; CREATE TABLE bench_commits (n INTEGER)");
const commit = writer.prepare("INSERT INTO bench_commits VALUES (1)");

/** µs per lookup, the lookup alone timed. */
function lookups(table: string, mmap: number, commitEvery: number): number {
  const db = new Database(path);
  db.exec("PRAGMA journal_mode = WAL");
  if (mmap) db.exec(`PRAGMA mmap_size = ${mmap}`);
  const q = db.query(`SELECT * FROM ${table} WHERE uuid = ?`);
  let ms = 0;
  for (let i = 0; i < LOOKUPS; i++) {
    if (commitEvery && i % commitEvery === 0) commit.run();
    const uuid = uuids[(i * 7919) % uuids.length]!;
    const t0 = performance.now();
    const row = q.get(uuid);
    ms += performance.now() - t0;
    if (!row) throw new Error(`device ${uuid} not found in ${table}`);
  }
  db.close();
  return (ms * 1000) / LOOKUPS;
}

const variants: [label: string, table: string, mmap: number][] = [
  ["as shipped (rowid table)", "devices", 0],
  ["mmap_size 2 GiB", "devices", 2 ** 31],
  ["WITHOUT ROWID", "devices_without_rowid", 0],
];
for (const every of [1, 5, 0]) {
  const best = new Map<string, number>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const [label, table, mmap] of round % 2 ? [...variants].reverse() : variants) {
      const us = lookups(table, mmap, every);
      best.set(label, Math.min(best.get(label) ?? Infinity, us));
    }
  }
  const base = best.get(variants[0]![0])!;
  const line = [...best].map(([label, us]) => `${label} ${us.toFixed(1)} µs (${(us / base).toFixed(2)}x)`).join(", ");
  console.log(`${every ? `a commit before every ${every === 1 ? "lookup" : `${every}th lookup`}` : "no commits"}: ${line}`);
}

/** µs per lookup, made `batch` at a time after a commit: one statement per device, or one `IN` read for the batch. */
function batched(batch: number, inOne: boolean): number {
  const db = new Database(path);
  db.exec("PRAGMA journal_mode = WAL");
  const one = db.query("SELECT * FROM devices WHERE uuid = ?");
  const many = db.query("SELECT * FROM devices WHERE uuid IN (SELECT value FROM json_each(?))"); // as SqliteStore.getDevices
  let ms = 0;
  for (let i = 0; i < LOOKUPS; i += batch) {
    commit.run();
    const keys = Array.from({ length: batch }, (_, j) => uuids[((i + j) * 7919) % uuids.length]!);
    const t0 = performance.now();
    const found = inOne ? many.all(JSON.stringify(keys)).length : keys.filter((k) => one.get(k)).length;
    ms += performance.now() - t0;
    if (found !== batch) throw new Error(`found ${found} devices of ${batch}`);
  }
  db.close();
  return (ms * 1000) / LOOKUPS;
}
for (const batch of [1, 4, 16]) {
  const best = [Infinity, Infinity];
  for (let round = 0; round < ROUNDS; round++)
    for (const inOne of round % 2 ? [true, false] : [false, true]) best[+inOne] = Math.min(best[+inOne]!, batched(batch, inOne));
  console.log(
    `a commit before every ${batch === 1 ? "lookup" : `${batch} lookups`}: one statement each ${best[0]!.toFixed(1)} µs, one IN read ${best[1]!.toFixed(1)} µs a lookup (${(best[1]! / best[0]!).toFixed(2)}x)`,
  );
}
writer.close();
