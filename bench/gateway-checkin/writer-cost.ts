/**
 * What one stored event and one sighting cost the SQLite writer thread's connection: CPU µs per
 * row of the gateway's event insert (`EVENT_SQL`, the status trigger firing) in batches of
 * --batch events, one transaction each, and of the sightings flush's UPDATE (`SIGHTING_SQL`, 256
 * devices a transaction), on a file seeded with --devices filler devices plus 10,000 devices that
 * already had an event (so each is "updating", as in bench/gateway-checkin's check-ins), with the
 * writer's settings (WAL, `synchronous = FULL`). Each DIR (a checkout, e.g. a `git archive` of an
 * older commit; default this one) seeds its own file with its own migrations, so each runs its
 * own trigger; the statements are this checkout's. DIRs alternate, best of --rounds. One thread,
 * CPU from `process.cpuUsage`: no message, wake-up or other thread counted.
 *
 * Usage: bun bench/gateway-checkin/writer-cost.ts [--devices 1000000] [--batch 40] [--events 20000] [--rounds 3] [DIR...]
 *
 * @module
 */
import { Database } from "bun:sqlite";
import { rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { EVENT_SQL, SIGHTING_SQL } from "../../gateway/store/_writer-thread.ts";
import { tempDir } from "../../test/harness/tmp.ts";
import { benchArgs } from "../_args.ts";

const { values, positionals } = benchArgs({
  options: {
    devices: { type: "string", default: "1000000" },
    batch: { type: "string", default: "40" },
    events: { type: "string", default: "20000" },
    rounds: { type: "string", default: "3" },
  },
  allowPositionals: true,
});
const DEVICES = Number(values.devices);
const BATCH = Number(values.batch);
const EVENTS = Number(values.events);
const ROUNDS = Number(values.rounds);
for (const [name, v] of [["--devices", DEVICES], ["--batch", BATCH], ["--events", EVENTS], ["--rounds", ROUNDS]] as const) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`${name} takes a whole number of at least 1`);
    process.exit(2);
  }
}
const dirs = positionals.length ? positionals.map((d) => resolve(d)) : [resolve(import.meta.dir, "../..")];
const ACTIVE = 10_000;
const tmp = await tempDir("bench-writer-cost-");

/** A file seeded by `dir`'s own seed (its migrations, its trigger), with ACTIVE devices "updating". */
async function seeded(dir: string, i: number): Promise<Database> {
  const path = join(tmp, `gateway-${i}.db`);
  const { seedFillerDevices } = (await import(join(dir, "bench/_seed.ts"))) as { seedFillerDevices(db: string, n: number): Promise<void> };
  await seedFillerDevices(path, DEVICES);
  const db = new Database(path);
  db.exec("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON");
  const ins = db.prepare("INSERT INTO devices (uuid, name, hardware_id, factory, tags, cert_serial, created_at) VALUES (?, ?, 'amd64-linux', 'main', '[\"main\"]', ?, ?)");
  const now = new Date().toISOString();
  db.transaction(() => {
    for (let d = 0; d < ACTIVE; d++) ins.run(`active-${d}`, `active-${d}`, `A${d}`, now);
  })();
  return db;
}

let seq = 0;
/** A check-in's event as bench/gateway-checkin/load.ts sends it, serialised as the gateway stores it: [device, id, body]. */
function event(d: number): [string, string, string] {
  const id = `${d}-${seq++}`;
  const body = JSON.stringify({ id, deviceTime: new Date().toISOString(), eventType: { id: "EcuDownloadStarted", version: 2 }, event: { correlationId: `c-${d}`, targetName: "amd64-linux-1", version: "1" } });
  return [`active-${d}`, id, body];
}

interface Side {
  dir: string;
  db: Database;
  next: number;
}

/** CPU µs per row of `rows` rows in transactions of `per`. */
function cpuPerRow(rows: number, per: number, tx: (n: number) => void): number {
  const c0 = process.cpuUsage();
  for (let done = 0; done < rows; done += per) tx(Math.min(per, rows - done));
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / rows;
}

function events(s: Side, rows: number, per: number): number {
  const insert = s.db.query(EVENT_SQL);
  // Serialised before the clock, as the main thread does before handing a batch over.
  const batch = Array.from({ length: rows }, (_, i) => event((s.next + i) % ACTIVE));
  s.next += rows;
  let i = 0;
  return cpuPerRow(rows, per, (n) => {
    const now = new Date().toISOString();
    s.db.transaction(() => {
      for (const end = i + n; i < end; i++) {
        const [device, id, body] = batch[i]!;
        insert.run(id, device, now, body);
      }
    })();
  });
}

function sightings(s: Side, rows: number): number {
  const update = s.db.query(SIGHTING_SQL);
  let d = 0;
  return cpuPerRow(rows, 256, (n) => {
    const at = new Date().toISOString();
    s.db.transaction(() => {
      for (let k = 0; k < n; k++, d++) update.run(at, '["main"]', "amd64-linux-1", null, `active-${d % ACTIVE}`);
    })();
  });
}

const sides: Side[] = [];
for (const [i, dir] of dirs.entries()) {
  console.error(`${dir}: seeding ${DEVICES} filler devices and ${ACTIVE} active ones...`);
  const side = { dir, db: await seeded(dir, i), next: 0 };
  events(side, ACTIVE, 100); // each active device "updating", its pages warm
  sightings(side, ACTIVE);
  sides.push(side);
}
const best = new Map<string, { events: number; sightings: number }>();
for (let round = 0; round < ROUNDS; round++) {
  for (const s of round % 2 ? [...sides].reverse() : sides) {
    const e = events(s, EVENTS, BATCH);
    const g = sightings(s, 10_240);
    console.error(`${s.dir}: event ${e.toFixed(1)} µs, sighting ${g.toFixed(1)} µs`);
    const b = best.get(s.dir);
    best.set(s.dir, { events: Math.min(b?.events ?? Infinity, e), sightings: Math.min(b?.sightings ?? Infinity, g) });
  }
}
console.log(`CPU µs per row on the writer's connection, best of ${ROUNDS}, ${DEVICES + ACTIVE} devices, events in batches of ${BATCH}, sightings 256 a transaction`);
for (const [dir, b] of best) console.log(`${dir}: event ${b.events.toFixed(1)}, sighting ${b.sightings.toFixed(1)}`);
for (const s of sides) s.db.close();
await rm(tmp, { recursive: true, force: true });
