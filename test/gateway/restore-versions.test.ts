/**
 * A backup older than the last publish, restored: the gateway it was made of went on signing
 * (publishes v2 and v3) before it was lost, and a device trusts those later TUF versions and runs
 * v3. Through the real CLI and a real gateway at the same address, with a simulated device that
 * verifies TUF as fioup does (tuf-js through lib/tuf): the restored gateway's first start signs
 * above those versions, so the device accepts its metadata at once; the next publish numbers its
 * target above the v3 the device reports running (publish/targets.ts nextVersion with the names
 * devices run), and the device updates to it.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { DeviceList } from "../../lib/api/admin.ts";
import { EMPTY_SHA256, type TargetEntry } from "../../lib/api/target.ts";
import { RESTORE_MARK } from "../../gateway/backup/after-restore.ts";
import { nextVersion } from "../../gateway/publish/targets.ts";
import { backupOfDatabase, restoreOfDatabase, startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { SimFleet } from "../harness/sim-devices.ts";
import { removeTempDir, tempDir, until } from "../harness/tmp.ts";

const REPO = resolve(import.meta.dir, "../..");
const PASS = "a long enough passphrase";
const started: GatewayHandle[] = [];
const work = await tempDir("restore-versions-");
afterAll(async () => {
  for (const g of started) await g.stop();
  removeTempDir(work);
}, 120_000);

async function cli(args: string[]) {
  const p = Bun.spawn([process.execPath, join(REPO, "gateway/main.ts"), ...args], { env: { ...process.env, GATEWAY_BACKUP_PASSPHRASE: PASS }, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

/** A target as publish makes it, for the simulated device's hardware id and tag; `content` stands for its apps. */
const target = (version: number, content: string): TargetEntry => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: {
    version: String(version),
    hardwareIds: ["amd64-linux"],
    tags: ["main"],
    docker_compose_apps: { web: { uri: `127.0.0.1:1/main/web@sha256:${content.repeat(64).slice(0, 64)}` } },
  },
});
const publish = async (gw: GatewayHandle, version: number, content: string) => {
  const res = await gw.adminFetch("/admin/targets", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ targets: { [`amd64-linux-${version}`]: target(version, content) } }) });
  expect(res.status).toBe(200);
};
const trustedVersion = (tufDir: string, role: string) => (JSON.parse(readFileSync(join(tufDir, `${role}.json`), "utf8")) as { signed: { version: number } }).signed.version;

test("a backup older than the last publish, restored at the same address: the device accepts its metadata and updates to the next publish", async () => {
  const gw = await startGateway();
  started.push(gw);
  const fleet = await SimFleet.register(gw, { count: 1, pullManifests: false });
  const device = fleet.devices[0]!;
  await publish(gw, 1, "a");
  expect((await device.cycle()).installed?.name).toBe("amd64-linux-1");

  const file = join(work, "gw.backup");
  // On PostgreSQL (OTA_TEST_DB=postgres) with its --db, and the database dumped beside the backup, as gateway/README.md says.
  const b = await cli(["backup", "--data", gw.dataDir, "--out", file, ...(await backupOfDatabase(gw.dataDir, file))]);
  expect(b.code).toBe(0);

  // After the backup the gateway signs on: v2 and v3, which the device installs.
  await publish(gw, 2, "b");
  await publish(gw, 3, "c");
  expect((await device.cycle()).installed?.name).toBe("amd64-linux-3");
  const trusted = { timestamp: trustedVersion(device.tufDir, "timestamp"), snapshot: trustedVersion(device.tufDir, "snapshot"), targets: trustedVersion(device.tufDir, "targets") };
  expect(trusted.timestamp).toBe(4);

  // Lost; restored from the older backup and served at the same address.
  await gw.stop();
  const restored = join(work, "restored");
  const r = await cli(["restore", file, "--data", restored]);
  expect(r.code).toBe(0);
  // On PostgreSQL the database was lost too: the dump pg_restored into a new one, the registry changed (test/harness/gateway.ts).
  const serveArgs = await restoreOfDatabase(file, restored);
  expect(existsSync(join(restored, RESTORE_MARK))).toBe(true);
  const gw2 = await startGateway({ dataDir: restored, port: gw.port, args: serveArgs });
  started.push(gw2);
  expect(gw2.url).toBe(gw.url);

  // The device accepts the restored gateway's metadata at once (before: "New timestamp version 2 is less than current version 4").
  await device.check();
  expect(device.transientErrors).toEqual([]);
  expect(existsSync(join(restored, RESTORE_MARK))).toBe(false); // the leap is signed once
  expect(readFileSync(gw2.logFile, "utf8")).toContain("gateway: restored from a backup: signed targets, snapshot and timestamp at versions");
  for (const role of ["timestamp", "snapshot", "targets"] as const) expect(trustedVersion(device.tufDir, role)).toBeGreaterThan(trusted[role]);
  expect(Object.keys(device.lastTargets!.targets)).toEqual(["amd64-linux-1"]);

  // It reports running v3, which the restored gateway never signed: the next publish numbers above it.
  const running = await until(
    "the device's check-in recorded",
    async () => ((await (await gw2.adminFetch("/admin/devices")).json()) as DeviceList).devices.flatMap((d) => (d.currentTarget ? [d.currentTarget] : [])),
    (names) => names.includes("amd64-linux-3"),
    10_000,
    100,
  );
  const list = (await (await gw2.adminFetch("/admin/targets")).json()) as { targets: Record<string, TargetEntry>; running?: string[] };
  expect(list.running).toEqual(["amd64-linux-3"]);
  expect(running).toContain("amd64-linux-3");
  // The lost name is refused, however it is posted.
  const refused = await gw2.adminFetch("/admin/targets", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ targets: { "amd64-linux-3": target(3, "e") } }) });
  expect(refused.status).toBe(409);
  const next = nextVersion(list.targets, list.running);
  expect(next).toBe(4);
  await publish(gw2, next, "d");
  expect((await device.cycle()).installed?.name).toBe("amd64-linux-4");
  expect(device.current).toBe("amd64-linux-4");

  // A second start of the restored dir does not leap again.
  const before = trustedVersion(device.tufDir, "timestamp");
  await gw2.stop();
  const gw3 = await startGateway({ dataDir: restored, port: gw.port });
  started.push(gw3);
  await device.check();
  expect(trustedVersion(device.tufDir, "timestamp")).toBeLessThan(before + 10);
}, 120_000);
