/**
 * Two replicas on one PostgreSQL database, one of them with its clock 10 minutes ahead (no NTP):
 * the real gateway under libfaketime (LD_PRELOAD; Bun's Date reads through it, its monotonic clock
 * is left alone). The skewed replica says so at start, naming its time and the database's, and
 * shows the difference on /metrics; the one on the right clock says nothing. The signer lease is
 * timed by the database, so the skewed replica does not take it from the live signer (it did as
 * soon as it started when each replica judged leases by its own clock). Once it is the signer, the
 * expiries it signs are reckoned by the database's clock: its timestamps expire when the other
 * replica's would, not 10 minutes later (or, a replica behind, already expired for the fleet).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { metricSample, startGateway, startReplica, type GatewayHandle, SIGNER_LOG as SIGNER } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import { tempDir, until } from "../harness/tmp.ts";

const ARCH = process.arch === "arm64" ? "aarch64" : "x86_64";
const LIBFAKETIME = `/usr/lib/${ARCH}-linux-gnu/faketime/libfaketime.so.1`;
const log = (r: GatewayHandle) => readFileSync(r.logFile, "utf8");

let pg: PostgresHandle;
let right: GatewayHandle;
let ahead: GatewayHandle;

beforeAll(async () => {
  if (!existsSync(LIBFAKETIME)) throw new Error(`${LIBFAKETIME} is missing: install Debian's faketime (scripts/setup.sh)`);
  pg = await startPostgres();
  const db = await pg.createDatabase("skew");
  // An 8 s timestamp, re-signed 2 s before it expires, and a lease that moves within seconds.
  const args = ["--registry-dir", join(await tempDir("shared-registry-"), "registry"), "--signer-lease", "2", "--tuf-expiry", "timestamp=8s"];
  right = await startGateway({ db, args });
  await until("the first replica signs", () => log(right), (l) => l.includes(SIGNER), 20_000);
  const faked = join(await tempDir("faketime-"), "faketime");
  writeFileSync(faked, "+600s\n");
  ahead = await startReplica(right, {
    db,
    args,
    env: { LD_PRELOAD: LIBFAKETIME, FAKETIME_TIMESTAMP_FILE: faked, FAKETIME_NO_CACHE: "1", FAKETIME_DONT_FAKE_MONOTONIC: "1" },
  });
}, 180_000);
afterAll(async () => {
  await ahead?.stop();
  await right?.stop();
  await pg?.stop();
}, 120_000);

test("the replica 10 minutes ahead warns at start, naming both clocks, and shows the skew on /metrics", async () => {
  const warning = log(ahead).split("\n").find((l) => l.includes("WARNING: this replica's clock"));
  expect(warning).toBeDefined();
  expect(warning).toMatch(/is 60\d\.\d s ahead of the database's \(\d{4}-/);
  expect(warning).toContain("NTP");
  expect(warning).toContain("registry tokens");
  expect(log(right)).not.toContain("WARNING: this replica's clock");
  const skew = await metricSample(ahead, "gateway_clock_skew_seconds");
  expect(skew).toBeGreaterThan(595);
  expect(skew).toBeLessThan(605);
  expect(Math.abs(await metricSample(right, "gateway_clock_skew_seconds"))).toBeLessThan(3);
});

test("the replica ahead does not take the live signer's lease", async () => {
  await Bun.sleep(5000); // more than two renewals of the skewed replica (every 2 s)
  expect(log(right)).not.toContain("another replica is the TUF signer now");
  expect(log(ahead)).not.toContain(SIGNER);
  // Once the signer is gone (SIGKILL: no hand-over), the other takes the role within a lease's life and a renewal.
  await right.kill();
  await until("the replica ahead takes the signer role", () => log(ahead), (l) => l.includes(SIGNER), 15_000);
}, 60_000);

test("the replica ahead, once the signer, signs timestamps that expire by the database's clock, not 10 minutes later", async () => {
  // It took the role at the end of the test before. After more than one timestamp's life (8 s)
  // with the other replica dead, the timestamp served is one it signed.
  await Bun.sleep(9000);
  const signed = (JSON.parse(await (await ahead.adminFetch("/repo/timestamp.json")).text()) as { signed: { expires: string } }).signed;
  // By the database's clock (this host's) it lives 8 s; reckoned by the replica's own clock it would expire about 608 s from now.
  const left = (Date.parse(signed.expires) - Date.now()) / 1000;
  expect(left).toBeGreaterThan(0);
  expect(left).toBeLessThanOrEqual(9);
}, 60_000);
