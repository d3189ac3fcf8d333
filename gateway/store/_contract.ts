/**
 * The contract every Store backend meets: run by sqlite.test.ts and
 * postgres.test.ts. No `.test` suffix, so bun test does not run it alone.
 */
import { describe, expect, test } from "bun:test";
import { tufStorageContract } from "../ota/_storage-contract.ts";
import type { DeviceEvent } from "../../lib/api/index.ts";
import { STORED_TOO_DEEP } from "./_rows.ts";
import { DeviceRevokedError, type NewDevice, type NewRegistrationToken, type Store } from "./types.ts";

let n = 0;
const uniq = () => `${Date.now().toString(16)}-${(n++).toString(16).padStart(4, "0")}`;

export const aDevice = (over: Partial<NewDevice> = {}): NewDevice => ({
  uuid: `dev-${uniq()}`,
  name: "dev",
  hardwareId: "amd64-linux",
  factory: "main",
  tags: ["main"],
  certSerial: "0A1B",
  ...over,
});

export const anEvent = (over: Partial<DeviceEvent> = {}): DeviceEvent => ({
  id: `ev-${uniq()}`,
  deviceTime: new Date().toISOString(),
  eventType: { id: "EcuDownloadStarted", version: 2 },
  event: { correlationId: "corr-1", targetName: "amd64-linux-1", version: "1" },
  ...over,
});

export function storeContract(open: () => Promise<Store>) {
  describe("tuf (TufStorage)", () => tufStorageContract(async () => (await open()).tuf));

  test("tryLease(): one holder at a time, renewed by its holder, taken over once expired, released at once", async () => {
    const s = await open();
    const name = `job-${uniq()}`;
    const t0 = new Date("2030-01-01T00:00:00.000Z");
    const at = (ms: number) => new Date(t0.getTime() + ms);
    expect(await s.tryLease(name, "a", 5000, t0)).toBe(true);
    expect(await s.tryLease(name, "b", 5000, at(1000))).toBe(false);
    expect(await s.tryLease(name, "a", 5000, at(4000))).toBe(true); // renewed until 9 s
    expect(await s.tryLease(name, "b", 5000, at(8000))).toBe(false);
    expect(await s.tryLease(name, "b", 5000, at(9500))).toBe(true); // a stopped renewing
    expect(await s.tryLease(name, "a", 5000, at(9600))).toBe(false);
    await s.releaseLease(name, "a"); // not a's: nothing happens
    expect(await s.tryLease(name, "a", 5000, at(9700))).toBe(false);
    await s.releaseLease(name, "b");
    expect(await s.tryLease(name, "a", 5000, at(9800))).toBe(true);
    // Concurrent claims on a free lease: exactly one wins.
    const free = `job-${uniq()}`;
    const wins = await Promise.all(["p", "q", "r", "s"].map((h) => s.tryLease(free, h, 5000, t0)));
    expect(wins.filter(Boolean).length).toBe(1);
  });

  test("getDevice() returns undefined for an unknown uuid", async () => {
    expect(await (await open()).getDevice("nope")).toBeUndefined();
  });

  test("putDevice() creates a device and getDevice() reads it back", async () => {
    const s = await open();
    const d = aDevice({ tags: ["main", "beta"], apps: ["httpd"] });
    const row = await s.putDevice(d);
    expect(row).toMatchObject({ uuid: d.uuid, tags: ["main", "beta"], apps: ["httpd"], lastSeen: null, revokedAt: null });
    expect(await s.getDevice(d.uuid)).toEqual(row);
  });

  test("putDevice() on an existing uuid replaces the certificate but keeps created_at", async () => {
    const s = await open();
    const d = aDevice({ createdAt: "2020-01-01T00:00:00.000Z" });
    await s.putDevice(d);
    const again = await s.putDevice({ ...d, certSerial: "FFFF", createdAt: "2024-01-01T00:00:00.000Z" });
    expect(again.certSerial).toBe("FFFF");
    expect(again.createdAt).toBe("2020-01-01T00:00:00.000Z");
  });

  test("revokeDevice() marks a device revoked and re-registration is refused", async () => {
    const s = await open();
    const d = aDevice();
    await s.putDevice(d);
    expect(await s.revokeDevice(d.uuid, "2025-01-01T00:00:00.000Z")).toBe(true);
    expect(await s.revokeDevice(d.uuid, "2026-01-01T00:00:00.000Z")).toBe(true);
    expect((await s.getDevice(d.uuid))!.revokedAt).toBe("2025-01-01T00:00:00.000Z");
    await expect(s.putDevice({ ...d, certSerial: "BEEF" })).rejects.toThrow(DeviceRevokedError);
    expect((await s.getDevice(d.uuid))!.certSerial).toBe(d.certSerial);
    expect(await s.revokeDevice("unknown-uuid", "2025-01-01T00:00:00.000Z")).toBe(false);
  });

  test("listDevices() pages by uuid and countDevices() counts", async () => {
    const s = await open();
    const before = await s.countDevices();
    const prefix = `page-${uniq()}`;
    for (const i of [3, 1, 2]) await s.putDevice(aDevice({ uuid: `${prefix}-${i}` }));
    expect(await s.countDevices()).toBe(before + 3);
    const first = await s.listDevices({ after: prefix, limit: 2 });
    expect(first.map((d) => d.uuid)).toEqual([`${prefix}-1`, `${prefix}-2`]);
    const next = await s.listDevices({ after: first[1]!.uuid, limit: 1 });
    expect(next.map((d) => d.uuid)).toEqual([`${prefix}-3`]);
  });

  test("recordSightings() updates last_seen, tags, target and apps in one batch", async () => {
    const s = await open();
    const a = aDevice({ tagsFromDevice: true });
    const b = aDevice();
    await s.putDevice(a);
    await s.putDevice(b);
    await s.recordSightings([
      { uuid: a.uuid, at: "2025-05-05T00:00:00.000Z", tags: ["prod"], currentTarget: "amd64-linux-7", apps: ["x", "y"] },
      { uuid: b.uuid, at: "2025-05-06T00:00:00.000Z" },
      { uuid: "not-registered", at: "2025-05-06T00:00:00.000Z" },
    ]);
    expect(await s.getDevice(a.uuid)).toMatchObject({
      lastSeen: "2025-05-05T00:00:00.000Z",
      tags: ["prod"],
      currentTarget: "amd64-linux-7",
      apps: ["x", "y"],
    });
    expect(await s.getDevice(b.uuid)).toMatchObject({ lastSeen: "2025-05-06T00:00:00.000Z", tags: ["main"], currentTarget: null });
  });

  test("recordSightings() never changes the tags of a device that may not choose them; setDeviceTags() does", async () => {
    const s = await open();
    const d = aDevice({ tags: ["prod"] });
    await s.putDevice(d);
    await s.recordSightings([{ uuid: d.uuid, at: "2025-05-05T00:00:00.000Z", tags: ["hacked"], currentTarget: "t-1" }]);
    expect(await s.getDevice(d.uuid)).toMatchObject({ tags: ["prod"], tagsFromDevice: false, currentTarget: "t-1" });
    expect((await s.setDeviceTags(d.uuid, ["beta", "qa"]))!.tags).toEqual(["beta", "qa"]);
    expect((await s.getDevice(d.uuid))!.tags).toEqual(["beta", "qa"]);
    expect(await s.setDeviceTags("unknown-uuid", ["x"])).toBeUndefined();
  });

  test("appendEvents() is idempotent by event id and keeps order", async () => {
    const s = await open();
    const d = aDevice();
    await s.putDevice(d);
    const total = await s.countEvents();
    const e1 = anEvent();
    const e2 = anEvent({ eventType: { id: "EcuDownloadCompleted", version: 2 } });
    expect(await s.appendEvents(d.uuid, [e1, e2])).toBe(2);
    expect(await s.appendEvents(d.uuid, [e1, e2, anEvent({ id: e2.id })])).toBe(0);
    const stored = await s.listEvents(d.uuid);
    expect(stored.map((e) => e.event)).toEqual([e1, e2]);
    expect(stored[0]!.deviceUuid).toBe(d.uuid);
    expect(await s.countEvents()).toBe(total + 2);
  });

  test("appendEvents() keeps events of different devices apart, even with equal ids", async () => {
    const s = await open();
    const a = aDevice();
    const b = aDevice();
    const e = anEvent();
    expect(await s.appendEvents(a.uuid, [e])).toBe(1);
    expect(await s.appendEvents(b.uuid, [e])).toBe(1);
    expect((await s.listEvents(a.uuid)).length).toBe(1);
  });

  test("concurrent appendEvents() calls all resolve with their own counts", async () => {
    const s = await open();
    const d = aDevice();
    const counts = await Promise.all(Array.from({ length: 20 }, () => s.appendEvents(d.uuid, [anEvent(), anEvent()])));
    expect(counts).toEqual(Array(20).fill(2));
    expect((await s.listEvents(d.uuid)).length).toBe(40);
  });

  test("apps states and system info are stored per device and replaced", async () => {
    const s = await open();
    const d = aDevice();
    expect(await s.getAppsStates(d.uuid)).toBeUndefined();
    const st = { deviceTime: "t", apps: { httpd: { uri: "r/x@sha256:1", state: "healthy" as const, services: [] } } };
    await s.putAppsStates(d.uuid, st);
    await s.putAppsStates(d.uuid, { ...st, deviceTime: "t2" });
    expect(await s.getAppsStates(d.uuid)).toEqual({ ...st, deviceTime: "t2" });
    await s.putSystemInfo(d.uuid, "network", { hostname: "h", mac: "m", local_ipv4: "1.2.3.4" });
    await s.putSystemInfo(d.uuid, "config", "[tls]\nserver = 'x'\n");
    await s.putSystemInfo(d.uuid, "network", { hostname: "h2", mac: "m", local_ipv4: "1.2.3.4" });
    expect(await s.getSystemInfo(d.uuid)).toEqual({
      network: { hostname: "h2", mac: "m", local_ipv4: "1.2.3.4" },
      config: "[tls]\nserver = 'x'\n",
    });
    expect(await s.getSystemInfo("other")).toEqual({});
  });

  test("device data stored nested deeper than 64 levels reads back as a marker, not the value", async () => {
    const s = await open();
    const d = aDevice();
    let deep: unknown = "bottom";
    for (let i = 0; i < 100; i++) deep = [deep];
    await s.putSystemInfo(d.uuid, "hardware", { cpu: deep });
    await s.putSystemInfo(d.uuid, "network", { hostname: "h", mac: "m", local_ipv4: "1.2.3.4" });
    expect(await s.getSystemInfo(d.uuid)).toEqual({ hardware: STORED_TOO_DEEP, network: { hostname: "h", mac: "m", local_ipv4: "1.2.3.4" } });
  });

  test("claimMeta() keeps the first value", async () => {
    const s = await open();
    const key = `k-${uniq()}`;
    expect(await s.claimMeta(key, "a")).toBe("a");
    expect(await s.claimMeta(key, "b")).toBe("a");
  });

  const aToken = (over: Partial<NewRegistrationToken> = {}): NewRegistrationToken => ({
    id: `tok-${uniq()}`,
    secretHash: `h-${uniq()}`,
    name: null,
    tags: ["main"],
    hardwareId: null,
    createdAt: new Date().toISOString(),
    expiresAt: "2099-01-01T00:00:00.000Z",
    maxUses: 1,
    allowDeviceTags: false,
    ...over,
  });
  const now = () => new Date().toISOString();

  test("registration tokens are found by hash and count their uses up to their limit", async () => {
    const s = await open();
    const t = aToken({ maxUses: 2, name: "line 3", allowDeviceTags: true });
    await s.createRegistrationToken(t);
    expect(await s.claimTokenUse(t.id, now())).toBe(true);
    expect(await s.getRegistrationTokenByHash(t.secretHash)).toMatchObject({
      id: t.id, name: "line 3", tags: ["main"], hardwareId: null, uses: 1, maxUses: 2, allowDeviceTags: true, revokedAt: null,
    });
    expect(await s.claimTokenUse(t.id, now())).toBe(true);
    expect(await s.claimTokenUse(t.id, now())).toBe(false);
    expect((await s.getRegistrationTokenByHash(t.secretHash))!.uses).toBe(2);
    expect(await s.getRegistrationTokenByHash("nope")).toBeUndefined();
    expect((await s.listRegistrationTokens()).some((x) => x.id === t.id)).toBe(true);
  });

  test("claimTokenUse() on the last use: of concurrent claims exactly one wins", async () => {
    const s = await open();
    const t = aToken({ maxUses: 1 });
    await s.createRegistrationToken(t);
    const wins = await Promise.all(Array.from({ length: 12 }, () => s.claimTokenUse(t.id, now())));
    expect(wins.filter(Boolean)).toHaveLength(1);
    expect((await s.getRegistrationTokenByHash(t.secretHash))!.uses).toBe(1);
  });

  test("claimTokenUse() refuses a revoked or expired token; no limit means unlimited", async () => {
    const s = await open();
    const revoked = aToken({ maxUses: 5 });
    await s.createRegistrationToken(revoked);
    expect(await s.revokeRegistrationToken(revoked.id, "2025-01-01T00:00:00.000Z")).toBe(true);
    expect(await s.claimTokenUse(revoked.id, now())).toBe(false);
    expect((await s.getRegistrationTokenByHash(revoked.secretHash))!.revokedAt).toBe("2025-01-01T00:00:00.000Z");
    expect(await s.revokeRegistrationToken("unknown", now())).toBe(false);
    const expired = aToken({ expiresAt: "2020-01-01T00:00:00.000Z" });
    await s.createRegistrationToken(expired);
    expect(await s.claimTokenUse(expired.id, now())).toBe(false);
    const unlimited = aToken({ maxUses: null });
    await s.createRegistrationToken(unlimited);
    for (let i = 0; i < 5; i++) expect(await s.claimTokenUse(unlimited.id, now())).toBe(true);
  });

  test("API tokens are found by hash and id, listed and revoked", async () => {
    const s = await open();
    const t = { id: `api-${uniq()}`, secretHash: `ah-${uniq()}`, role: "publish" as const, name: "ci", createdAt: now(), expiresAt: "2099-01-01T00:00:00.000Z" };
    await s.createApiToken(t);
    expect(await s.getApiTokenByHash(t.secretHash)).toEqual({ ...t, revokedAt: null });
    expect(await s.getApiToken(t.id)).toEqual({ ...t, revokedAt: null });
    expect((await s.listApiTokens()).some((x) => x.id === t.id)).toBe(true);
    expect(await s.revokeApiToken(t.id, "2025-02-02T00:00:00.000Z")).toBe(true);
    expect(await s.revokeApiToken(t.id, "2026-02-02T00:00:00.000Z")).toBe(true);
    expect((await s.getApiToken(t.id))!.revokedAt).toBe("2025-02-02T00:00:00.000Z");
    expect(await s.revokeApiToken("unknown", now())).toBe(false);
    expect(await s.getApiTokenByHash("nope")).toBeUndefined();
  });

  test("searchDevices(): status follows the latest update event (via the database), filters combine, pages and counts", async () => {
    const s = await open();
    const hw = `hw-${uniq()}`;
    const later = new Date(Date.now() + 3600_000).toISOString();
    const past = new Date(Date.now() - 3600_000).toISOString();
    const [ok, failing, rolled, busy, quiet] = await Promise.all(
      ["ok", "failing", "rolled", "busy", "quiet"].map((name) => s.putDevice(aDevice({ name: `${name}-${hw}`, hardwareId: hw, tags: [name === "ok" ? "prod" : "production"] }))),
    );
    await s.recordSightings([ok!, failing!, rolled!, busy!].map((d) => ({ uuid: d.uuid, at: new Date().toISOString(), currentTarget: `${hw}-2` })));
    await s.recordSightings([{ uuid: quiet!.uuid, at: "2000-01-01T00:00:00.000Z" }]);
    const ev = (type: string, event: Record<string, unknown> = {}) =>
      anEvent({ eventType: { id: type, version: 2 }, event: { correlationId: "c", targetName: `${hw}-2`, ...event } });
    await s.appendEvents(ok!.uuid, [ev("EcuDownloadStarted"), ev("EcuInstallationCompleted", { success: true })]);
    await s.appendEvents(failing!.uuid, [ev("EcuDownloadStarted"), ev("EcuDownloadCompleted", { success: false, details: "registry said 404" })]);
    await s.appendEvents(rolled!.uuid, [ev("EcuInstallationCompleted", { success: false, details: '{"phase":"start","rollbackOk":true}' })]);
    await s.appendEvents(busy!.uuid, [ev("EcuInstallationCompleted", { success: true }), ev("EcuDownloadStarted", { correlationId: "d" })]);

    const all = await s.searchDevices({ hardwareId: hw, offlineBefore: past, sort: "name" });
    expect(all.total).toBe(5);
    expect(Object.fromEntries(all.devices.map((d) => [d.name.split("-")[0], d.status]))).toEqual({
      ok: "up-to-date", failing: "failed", rolled: "rolled-back", busy: "updating", quiet: "offline",
    });
    expect(all.devices.find((d) => d.uuid === failing!.uuid)!.statusDetail).toBe("registry said 404");

    const failed = await s.searchDevices({ hardwareId: hw, status: "failed", offlineBefore: past });
    expect(failed.devices.map((d) => d.uuid)).toEqual([failing!.uuid]);
    expect((await s.searchDevices({ hardwareId: hw, tag: "prod", offlineBefore: past })).devices.map((d) => d.uuid)).toEqual([ok!.uuid]);
    expect((await s.searchDevices({ text: `ROLLED-${hw}`.toUpperCase(), offlineBefore: past })).total).toBe(1);
    expect((await s.searchDevices({ uuid: rolled!.uuid, offlineBefore: past })).devices.map((d) => d.status)).toEqual(["rolled-back"]);
    expect((await s.searchDevices({ hardwareId: hw, target: `${hw}-2`, offlineBefore: past })).total).toBe(4);
    // Everyone is offline when the cut-off is in the future.
    expect((await s.searchDevices({ hardwareId: hw, status: "offline", offlineBefore: later })).total).toBe(5);
    const page = await s.searchDevices({ hardwareId: hw, offlineBefore: past, sort: "name", desc: true, limit: 2, offset: 1 });
    expect(page.devices.map((d) => d.name.split("-")[0])).toEqual(["quiet", "ok"]); // rolled, quiet, ok, failing, busy
    expect(page.total).toBe(5);

    await s.revokeDevice(busy!.uuid, new Date().toISOString());
    expect((await s.searchDevices({ hardwareId: hw, status: "revoked", offlineBefore: past })).devices.map((d) => d.uuid)).toEqual([busy!.uuid]);
    const sum = await s.fleetSummary(past, 1000);
    expect(sum.recentFailures.map((d) => d.uuid)).toEqual(expect.arrayContaining([failing!.uuid, rolled!.uuid]));
    expect(sum.versions.find((v) => v.target === `${hw}-2`)?.devices).toBe(3);
    expect(sum.total).toBeGreaterThanOrEqual(5);
  });
}
