/**
 * Two replicas on one PostgreSQL database, and the signer's timestamp key gone from its data dir
 * (moved away, a damaged disk): the signer stays alive and renews its lease, so nothing else would
 * move the role, and the fleet's timestamp would expire while the other replica, keys intact,
 * stood by. Now the signer that cannot sign steps down: the other replica takes the role within
 * seconds and the timestamp devices fetch stays fresh. The first replica warns on /healthz while it
 * stays out of the role, says why once in its log, and takes the role again only once it is free.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { rename } from "node:fs/promises";
import { join } from "node:path";
import { startGateway, startReplica, type GatewayHandle, SIGNER_LOG as SIGNER } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import { tempDir, until } from "../harness/tmp.ts";

const log = (r: GatewayHandle) => readFileSync(r.logFile, "utf8");

let pg: PostgresHandle;
let first: GatewayHandle;
let second: GatewayHandle;

beforeAll(async () => {
  pg = await startPostgres();
  const db = await pg.createDatabase("handover");
  // An 8 s timestamp, re-signed 2 s before it expires: a signer that stops signing shows within
  // seconds, and a takeover (about a second: the other replica tries every 0.67 s) fits in those 2 s.
  const args = ["--registry-dir", join(await tempDir("shared-registry-"), "registry"), "--signer-lease", "2", "--tuf-expiry", "timestamp=8s"];
  first = await startGateway({ db, args });
  await until("the first replica signs", () => log(first), (l) => l.includes(SIGNER), 20_000);
  second = await startReplica(first, { db, args });
}, 180_000);
afterAll(async () => {
  await second?.stop();
  await first?.stop();
  await pg?.stop();
}, 120_000);

const timestamp = async (r: GatewayHandle) => (JSON.parse(await (await r.adminFetch("/repo/timestamp.json")).text()) as { signed: { version: number; expires: string } }).signed;
const warnings = async (r: GatewayHandle) => ((await (await fetch(`${r.url}/healthz`, { tls: { ca: r.caPem } } as RequestInit)).json()) as { warnings?: string[] }).warnings;

test("the signer whose timestamp key is gone hands the role over; the timestamp devices get stays fresh", async () => {
  expect(log(second)).not.toContain(SIGNER);
  const keyFile = join(first.dataDir, "tuf", "keys", "timestamp.json");
  await rename(keyFile, join(await tempDir("key-away-"), "timestamp.json"));
  const broke = Date.now();

  // The key is missed when the timestamp next falls due (within 6 s), then the role moves.
  await until("the second replica to take the role", () => log(second), (l) => l.includes(SIGNER), 20_000);
  expect(Date.now() - broke).toBeLessThan(12_000);
  expect(log(first)).toMatch(/cannot refresh TUF metadata: Cannot sign TUF timestamp metadata with .*; another replica may take the signer role, this one seeks it again in 10 s/);
  const warned = await warnings(first);
  expect(warned?.[0]).toContain("Cannot sign TUF timestamp metadata with ");
  expect(await warnings(second)).toBeUndefined();

  // For 16 s (two lifetimes of a timestamp, re-signed every 6 s), both replicas serve one that has
  // not expired, and it keeps changing: the second replica signs. The first does not take the role
  // back from it.
  const seen = new Set<number>();
  for (const end = Date.now() + 16_000; Date.now() < end; await Bun.sleep(500)) {
    for (const r of [first, second]) {
      const t = await timestamp(r);
      expect(new Date(t.expires).getTime(), `replica ${r.port} served an expired timestamp`).toBeGreaterThan(Date.now() - 1000);
      seen.add(t.version);
    }
  }
  expect(seen.size).toBeGreaterThanOrEqual(3);
  expect(log(first).match(/cannot refresh TUF metadata/g)?.length).toBe(1);
  // Past its 10 s pause, the first replica no longer counts itself as failing: the role is the other's.
  expect(await warnings(first)).toBeUndefined();
}, 90_000);
