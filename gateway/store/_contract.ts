/**
 * The contract every Store backend meets: run by sqlite.test.ts and
 * postgres.test.ts. No `.test` suffix, so bun test does not run it alone.
 */
import { describe, expect, setSystemTime, test } from "bun:test";
import { tufStorageContract } from "../ota/_storage-contract.ts";
import type { DeviceEvent } from "../../lib/api/index.ts";
import { MAX_DURATION_SECONDS } from "../../lib/api/duration.ts";
import { STORED_TOO_DEEP } from "./_rows.ts";
import {
  DeviceRegisteredMeanwhileError,
  TokenUsedUpError,
  DeviceRevokedError,
  GroupExistsError,
  RolloutConflictError,
  TooManyLabelsError,
  type FleetQuery,
  type NewDevice,
  type NewRegistrationToken,
  type RolloutRow,
  type Store,
} from "./types.ts";

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
    expect(await s.tryLease(name, "a", 1000)).toBe(true); // until ~1 s
    expect(await s.tryLease(name, "b", 1000)).toBe(false);
    await Bun.sleep(600);
    expect(await s.tryLease(name, "a", 1000)).toBe(true); // renewed until ~1.6 s
    await Bun.sleep(600);
    expect(await s.tryLease(name, "b", 1000)).toBe(false); // ~1.2 s: a's first term is over, its renewal is not
    await Bun.sleep(700);
    expect(await s.tryLease(name, "b", 1000)).toBe(true); // a stopped renewing
    expect(await s.tryLease(name, "a", 1000)).toBe(false);
    await s.releaseLease(name, "a"); // not a's: nothing happens
    expect(await s.tryLease(name, "a", 1000)).toBe(false);
    await s.releaseLease(name, "b");
    expect(await s.tryLease(name, "a", 1000)).toBe(true);
    // Concurrent claims on a free lease: exactly one wins.
    const free = `job-${uniq()}`;
    const wins = await Promise.all(["p", "q", "r", "s"].map((h) => s.tryLease(free, h, 5000)));
    expect(wins.filter(Boolean).length).toBe(1);
  });

  test("tryLease(): judged by the database's clock, so a replica whose clock runs ahead does not take a live lease", async () => {
    const s = await open();
    const name = `job-${uniq()}`;
    expect(await s.tryLease(name, "a", 60_000)).toBe(true);
    setSystemTime(new Date(Date.now() + 10 * 60_000)); // this process's clock 10 min ahead, as a replica without NTP
    try {
      expect(await s.tryLease(name, "b", 60_000)).toBe(false);
      expect(await s.tryLease(name, "a", 60_000)).toBe(true);
    } finally {
      setSystemTime();
    }
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

  test("getDevices() reads the registered ones of many uuids at once, revoked ones included, unknown ones left out", async () => {
    const s = await open();
    const [a, b, c] = await Promise.all([1, 2, 3].map((i) => s.putDevice(aDevice({ tags: [`t${i}`] }))));
    await s.revokeDevice(c!.uuid, "2025-01-01T00:00:00.000Z");
    const rows = await s.getDevices([a!.uuid, "nope", c!.uuid, a!.uuid, b!.uuid]);
    expect([...rows.keys()].sort()).toEqual([a!.uuid, b!.uuid, c!.uuid].sort());
    for (const d of [a!, b!, c!]) expect(rows.get(d.uuid)).toEqual((await s.getDevice(d.uuid))!);
    expect(rows.get(c!.uuid)!.revokedAt).toBe("2025-01-01T00:00:00.000Z");
    expect((await s.getDevices([])).size).toBe(0);
  });

  test("putDevice() on an existing uuid replaces the certificate but keeps created_at", async () => {
    const s = await open();
    const d = aDevice({ createdAt: "2020-01-01T00:00:00.000Z" });
    await s.putDevice(d);
    const again = await s.putDevice({ ...d, certSerial: "FFFF", createdAt: "2024-01-01T00:00:00.000Z" });
    expect(again.certSerial).toBe("FFFF");
    expect(again.createdAt).toBe("2020-01-01T00:00:00.000Z");
  });

  test("deviceKeySha256() reads the key of the current certificate, kept out of the device row", async () => {
    const s = await open();
    const d = aDevice();
    expect(await s.deviceKeySha256(d.uuid)).toBeUndefined();
    await s.putDevice(d);
    expect(await s.deviceKeySha256(d.uuid)).toBeNull(); // registered without one recorded
    const row = await s.putDevice({ ...d, certSerial: "AAAA", keySha256: "ab".repeat(32) });
    expect(await s.deviceKeySha256(d.uuid)).toBe("ab".repeat(32));
    expect(row).not.toHaveProperty("keySha256");
    await s.putDevice({ ...d, certSerial: "BBBB", keySha256: "cd".repeat(32) });
    expect(await s.deviceKeySha256(d.uuid)).toBe("cd".repeat(32));
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

  test("runningTargets() lists each target the devices not revoked report running, once", async () => {
    const s = await open();
    const t = `running-${uniq()}`;
    const [a, b, c, d] = [aDevice(), aDevice(), aDevice(), aDevice()];
    for (const x of [a, b, c, d]) await s.putDevice(x);
    await s.recordSightings([
      { uuid: a.uuid, at: "2025-05-05T00:00:00.000Z", currentTarget: `${t}-3` },
      { uuid: b.uuid, at: "2025-05-05T00:00:00.000Z", currentTarget: `${t}-3` },
      { uuid: c.uuid, at: "2025-05-05T00:00:00.000Z", currentTarget: `${t}-9` },
    ]);
    await s.revokeDevice(c.uuid, "2025-05-06T00:00:00.000Z");
    expect((await s.runningTargets()).filter((n) => n.startsWith(t))).toEqual([`${t}-3`]);
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

  test("searchDevices() by tag finds a device that follows a tag its token overrode, by the tags it reports; groups and rollouts keep to the gateway's", async () => {
    const s = await open();
    const hw = `hw-${uniq()}`;
    const past = "2000-01-01T00:00:00.000Z";
    // Registered with --tag canary by an older fioup, the token's "main" recorded; it still follows canary.
    const old = (await s.putDevice(aDevice({ name: "old", hardwareId: hw, tags: ["main"] })))!;
    const other = (await s.putDevice(aDevice({ name: "other", hardwareId: hw, tags: ["main"] })))!;
    const silent = (await s.putDevice(aDevice({ name: "silent", hardwareId: hw, tags: ["main"] })))!;
    await s.recordSightings([
      { uuid: old.uuid, at: new Date().toISOString(), tags: ["canary"] },
      { uuid: other.uuid, at: new Date().toISOString(), tags: ["main"] },
      { uuid: silent.uuid, at: new Date().toISOString() },
    ]);
    const byTag = async (tag: string) => (await s.searchDevices({ hardwareId: hw, tag, offlineBefore: past, sort: "name" })).devices;
    const canary = await byTag("canary");
    expect(canary.map((d) => [d.name, d.tags, d.reportedTags])).toEqual([["old", ["main"], ["canary"]]]);
    expect((await byTag("main")).map((d) => [d.name, d.reportedTags])).toEqual([["old", ["canary"]], ["other", ["main"]], ["silent", null]]);
    expect(await byTag("canar")).toEqual([]);
    // Counted apart from the devices the gateway tags so, which are all a rollout by the tag reaches.
    const counts = async (tag?: string) => {
      const { total, revoked, reportedOnly } = await s.searchDevices({ hardwareId: hw, tag, offlineBefore: past, countRevoked: true, limit: 1 });
      return { total, revoked, reportedOnly };
    };
    expect(await counts("canary")).toEqual({ total: 1, revoked: 0, reportedOnly: 1 });
    expect(await counts("main")).toEqual({ total: 3, revoked: 0, reportedOnly: 0 });
    expect(await counts()).toEqual({ total: 3, revoked: 0, reportedOnly: undefined });
    // What the gateway gives it is unchanged, and what a group or rollout by tag counts.
    expect((await s.getDevice(old.uuid))!.tags).toEqual(["main"]);
    expect(await s.queryDevices({ hardwareId: hw, tags: ["canary"] })).toEqual([]);
    // A later report replaces it; a check-in without the header keeps it.
    await s.recordSightings([{ uuid: old.uuid, at: new Date().toISOString(), tags: ["main"] }]);
    await s.recordSightings([{ uuid: old.uuid, at: new Date().toISOString() }]);
    expect(await byTag("canary")).toEqual([]);
    expect((await byTag("main")).find((d) => d.name === "old")!.reportedTags).toEqual(["main"]);
    // A revoked device is counted as revoked only, whatever it reported.
    await s.recordSightings([{ uuid: other.uuid, at: new Date().toISOString(), tags: ["canary"] }]);
    await s.revokeDevice(other.uuid, new Date().toISOString());
    expect(await counts("canary")).toEqual({ total: 1, revoked: 1, reportedOnly: 0 });
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

  test("appendEvents() stores an event whose text holds U+0000 or half a surrogate pair, as U+FFFD, on every backend", async () => {
    const s = await open();
    const d = aDevice();
    await s.putDevice(d);
    const odd = anEvent({ eventType: { id: "EcuInstallationCompleted", version: 2 }, event: { correlationId: "c", success: false, details: "nul \u0000 and \ud800 cut", extra: { note: "\udc00" } } as DeviceEvent["event"] });
    expect(await s.appendEvents(d.uuid, [odd, anEvent()])).toBe(2);
    const [stored] = await s.listEvents(d.uuid);
    expect(stored!.event.event.details).toBe("nul \uFFFD and \uFFFD cut");
    expect((stored!.event.event as Record<string, unknown>).extra).toEqual({ note: "\uFFFD" });
    expect(stored!.event.id).toBe(odd.id);
  });

  test("listEvents() gives a device's events in arrival order, whatever their ids; past the limit its newest", async () => {
    const s = await open();
    const d = aDevice();
    const other = aDevice();
    const sent: ReturnType<typeof anEvent>[] = [];
    for (let i = 0; i < 5; i++) {
      const batch = Array.from({ length: 6 }, () => anEvent({ id: crypto.randomUUID() })); // id order is not arrival order
      sent.push(...batch);
      await s.appendEvents(d.uuid, batch);
      await s.appendEvents(other.uuid, [anEvent()]);
    }
    expect((await s.listEvents(d.uuid)).map((e) => e.event.id)).toEqual(sent.map((e) => e.id));
    expect((await s.listEvents(d.uuid, { limit: 7 })).map((e) => e.event.id)).toEqual(sent.slice(-7).map((e) => e.id));
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

  test("readMeta() reads what claimMeta() stored, undefined before", async () => {
    const s = await open();
    const key = `k-${uniq()}`;
    expect(await s.readMeta(key)).toBeUndefined();
    await s.claimMeta(key, "v");
    expect(await s.readMeta(key)).toBe("v");
  });

  test("forgetMeta() removes a value only while it is the one given; claimMeta() then stores anew", async () => {
    const s = await open();
    const key = `k-${uniq()}`;
    expect(await s.forgetMeta(key, "a")).toBe(false);
    await s.claimMeta(key, "a");
    expect(await s.forgetMeta(key, "b")).toBe(false);
    expect(await s.readMeta(key)).toBe("a");
    expect(await s.forgetMeta(key, "a")).toBe(true);
    expect(await s.readMeta(key)).toBeUndefined();
    expect(await s.claimMeta(key, "b")).toBe("b");
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

  test("putDevice() spending a token's use: a refused write gives it back, a used-up token writes nothing", async () => {
    const s = await open();
    const t = aToken({ maxUses: 2 });
    await s.createRegistrationToken(t);
    const d = aDevice();
    const first = await s.putDevice({ ...d, replaces: null, spendsUseOf: t.id });
    // Registered meanwhile: this write expected an unregistered uuid, so it is refused and its use not spent.
    await expect(s.putDevice({ ...d, certSerial: "02", replaces: null, spendsUseOf: t.id })).rejects.toBeInstanceOf(DeviceRegisteredMeanwhileError);
    expect((await s.getRegistrationTokenByHash(t.secretHash))!.uses).toBe(1);
    await s.putDevice({ ...d, certSerial: "03", replaces: first.certSerial, spendsUseOf: t.id });
    expect((await s.getRegistrationTokenByHash(t.secretHash))!.uses).toBe(2);
    const e = aDevice();
    await expect(s.putDevice({ ...e, replaces: null, spendsUseOf: t.id })).rejects.toBeInstanceOf(TokenUsedUpError);
    expect(await s.getDevice(e.uuid)).toBeUndefined();
    expect((await s.getDevice(d.uuid))!.certSerial).toBe("03");
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

    expect(page.revoked).toBeUndefined(); // counted only when asked
    expect((await s.searchDevices({ hardwareId: hw, offlineBefore: past, countRevoked: true })).revoked).toBe(0);
    // A page of a listing by uuid counts nothing: the rest of the fleet is not scanned at every page.
    expect(await s.searchDevices({ hardwareId: hw, offlineBefore: past, sort: "uuid", uuidAfter: "0", count: false })).not.toHaveProperty("total");
    await s.revokeDevice(busy!.uuid, new Date().toISOString());
    expect((await s.searchDevices({ hardwareId: hw, status: "revoked", offlineBefore: past })).devices.map((d) => d.uuid)).toEqual([busy!.uuid]);
    // How many of those it matches are revoked, from the same count.
    expect(await s.searchDevices({ hardwareId: hw, offlineBefore: past, limit: 1, countRevoked: true })).toMatchObject({ total: 5, revoked: 1 });
    expect(await s.searchDevices({ hardwareId: hw, tag: "production", offlineBefore: past, limit: 1, countRevoked: true })).toMatchObject({ total: 4, revoked: 1 });
    expect(await s.searchDevices({ hardwareId: hw, status: "failed", offlineBefore: past, countRevoked: true })).toMatchObject({ total: 1, revoked: 0 });
    const sum = await s.fleetSummary(past, 1000);
    expect(sum.recentFailures.map((d) => d.uuid)).toEqual(expect.arrayContaining([failing!.uuid, rolled!.uuid]));
    expect(sum.versions.find((v) => v.target === `${hw}-2`)?.devices).toBe(3);
    expect(sum.total).toBeGreaterThanOrEqual(5);
  });

  test("fleetSummary() counts the devices of every target they run, not only the first 100 (the Targets page reads its counts there)", async () => {
    const s = await open();
    const hw = `hw-${uniq()}`;
    const devices = Array.from({ length: 120 }, () => aDevice({ hardwareId: hw }));
    for (const d of devices) await s.putDevice(d);
    await s.recordSightings(devices.map((d, i) => ({ uuid: d.uuid, at: new Date().toISOString(), currentTarget: `${hw}-${i}` })));
    const { versions } = await s.fleetSummary(new Date(Date.now() - 3600_000).toISOString(), 10);
    expect(versions.filter((v) => v.target?.startsWith(`${hw}-`)).length).toBe(120);
  });

  test("searchDevices(): a device that never checked in is never-seen past the cut-off, not offline, in the list, its filters and the summary", async () => {
    const s = await open();
    const hw = `hw-${uniq()}`;
    const past = new Date(Date.now() - 3600_000).toISOString();
    const later = new Date(Date.now() + 3600_000).toISOString();
    const [quiet, never] = await Promise.all(["quiet", "never"].map((name) => s.putDevice(aDevice({ name: `${name}-${hw}`, hardwareId: hw }))));
    await s.recordSightings([{ uuid: quiet!.uuid, at: "2000-01-01T00:00:00.000Z" }]);
    const statuses = async (offlineBefore: string) =>
      Object.fromEntries((await s.searchDevices({ hardwareId: hw, offlineBefore })).devices.map((d) => [d.name.split("-")[0], d.status]));
    // Just registered: not yet past the cut-off, so its status stands.
    expect(await statuses(past)).toEqual({ quiet: "offline", never: "registered" });
    expect(await statuses(later)).toEqual({ quiet: "offline", never: "never-seen" });
    const uuids = async (status: "offline" | "never-seen" | "registered", offlineBefore: string) =>
      (await s.searchDevices({ hardwareId: hw, status, offlineBefore })).devices.map((d) => d.uuid);
    expect(await uuids("never-seen", later)).toEqual([never!.uuid]);
    expect(await uuids("offline", later)).toEqual([quiet!.uuid]);
    expect(await uuids("never-seen", past)).toEqual([]);
    expect(await uuids("registered", past)).toEqual([never!.uuid]);
    expect(await uuids("registered", later)).toEqual([]);
    expect((await s.fleetSummary(later, 10)).byStatus["never-seen"]).toBeGreaterThanOrEqual(1);
    // Revoked wins, as over offline.
    await s.revokeDevice(never!.uuid, new Date().toISOString());
    expect(await statuses(later)).toEqual({ quiet: "offline", never: "revoked" });
    expect(await uuids("never-seen", later)).toEqual([]);
  });

  test("statusAt is when the device took its status: events that leave status and detail as they are change nothing", async () => {
    const s = await open();
    const hw = `hw-${uniq()}`;
    const d = (await s.putDevice(aDevice({ name: `at-${hw}`, hardwareId: hw })))!;
    const ev = (type: string, event: Record<string, unknown> = {}) =>
      anEvent({ eventType: { id: type, version: 2 }, event: { correlationId: "c", targetName: `${hw}-2`, ...event } });
    const state = async () => {
      const x = (await s.searchDevices({ uuid: d.uuid, offlineBefore: "2000-01-01T00:00:00.000Z" })).devices[0]!;
      return { status: x.status, detail: x.statusDetail, at: x.statusAt };
    };
    const later = () => Bun.sleep(5); // received_at has millisecond resolution
    await s.appendEvents(d.uuid, [ev("EcuDownloadStarted")]);
    const started = await state();
    expect(started.status).toBe("updating");
    expect(started.at).not.toBeNull();
    await later();
    await s.appendEvents(d.uuid, [ev("EcuDownloadCompleted", { success: true })]);
    await later();
    await s.appendEvents(d.uuid, [ev("EcuInstallationStarted"), ev("EcuInstallationApplied")]);
    expect(await state()).toEqual(started);
    await later();
    await s.appendEvents(d.uuid, [ev("EcuInstallationCompleted", { success: false, details: "app httpd unhealthy" })]);
    const failed = await state();
    expect(failed.status).toBe("failed");
    expect(failed.detail).toBe("app httpd unhealthy");
    expect(failed.at! > started.at!).toBe(true);
    // The same failure again: unchanged; another reason: a new detail, a new time.
    await later();
    await s.appendEvents(d.uuid, [ev("EcuInstallationCompleted", { success: false, details: "app httpd unhealthy" })]);
    expect(await state()).toEqual(failed);
    await later();
    await s.appendEvents(d.uuid, [ev("EcuDownloadCompleted", { success: false, details: "registry said 404" })]);
    const again = await state();
    expect(again).toMatchObject({ status: "failed", detail: "registry said 404" });
    expect(again.at! > failed.at!).toBe(true);
    await later();
    await s.appendEvents(d.uuid, [ev("EcuDownloadStarted", { correlationId: "d" })]);
    const next = await state();
    expect(next).toMatchObject({ status: "updating", detail: null });
    expect(next.at! > again.at!).toBe(true);
  });

  test("a cancel on the device (a failed completion with \"canceled\":true) is \"cancelled\", no failure; a later install is up-to-date", async () => {
    const s = await open();
    const hw = `hw-${uniq()}`;
    const [d, e] = await Promise.all(["cancel-install", "cancel-download"].map((name) => s.putDevice(aDevice({ name: `${name}-${hw}`, hardwareId: hw }))));
    const ev = (type: string, event: Record<string, unknown> = {}) =>
      anEvent({ eventType: { id: type, version: 2 }, event: { correlationId: "c", targetName: `${hw}-2`, ...event } });
    const state = async (uuid: string) => {
      const x = (await s.searchDevices({ uuid, offlineBefore: "2000-01-01T00:00:00.000Z" })).devices[0]!;
      return { status: x.status, detail: x.statusDetail };
    };
    // As fioup's cancel writes it (fioup/update/cancel.ts), the previous apps put back.
    const canceled = JSON.stringify({ canceled: true, restoredTo: "x-1", restoreOk: true });
    await s.appendEvents(d!.uuid, [ev("EcuDownloadStarted"), ev("EcuInstallationStarted"), ev("EcuInstallationCompleted", { success: false, details: canceled })]);
    await s.appendEvents(e!.uuid, [ev("EcuDownloadStarted"), ev("EcuDownloadCompleted", { success: false, details: '{"canceled":true}' })]);
    expect(await state(d!.uuid)).toEqual({ status: "cancelled", detail: null });
    expect(await state(e!.uuid)).toEqual({ status: "cancelled", detail: null });
    expect((await s.searchDevices({ hardwareId: hw, status: "cancelled", offlineBefore: "2000-01-01T00:00:00.000Z" })).total).toBe(2);
    expect((await s.searchDevices({ hardwareId: hw, status: "failed", offlineBefore: "2000-01-01T00:00:00.000Z" })).total).toBe(0);
    expect((await s.fleetSummary("2000-01-01T00:00:00.000Z", 1000)).recentFailures.map((x) => x.uuid)).not.toContain(d!.uuid);

    await s.appendEvents(d!.uuid, [ev("EcuDownloadStarted", { correlationId: "again" }), ev("EcuInstallationCompleted", { correlationId: "again", success: true })]);
    expect(await state(d!.uuid)).toEqual({ status: "up-to-date", detail: null });
    // A cancel whose restore failed may leave no working app: a failure, with its reason.
    const unrestored = JSON.stringify({ canceled: true, restoredTo: null, restoreOk: false, restoreError: "no such image" });
    await s.appendEvents(d!.uuid, [ev("EcuInstallationCompleted", { correlationId: "third", success: false, details: unrestored })]);
    expect(await state(d!.uuid)).toEqual({ status: "failed", detail: unrestored });
    // A failure that is no cancel is still "failed", with its reason.
    await s.appendEvents(e!.uuid, [ev("EcuDownloadCompleted", { correlationId: "again", success: false, details: '{"canceled":false,"error":"registry said 404"}' })]);
    expect(await state(e!.uuid)).toEqual({ status: "failed", detail: '{"canceled":false,"error":"registry said 404"}' });
  });

  test("searchDevices(): sorted by last seen or target, the devices without one come last either way, on every backend, ties by uuid", async () => {
    // SQLite put NULL first ascending and PostgreSQL first descending: the same page differed by backend.
    const s = await open();
    const hw = `hws-${uniq()}`;
    const mk = async () => (await s.putDevice(aDevice({ hardwareId: hw }))).uuid;
    const [old, fresh, never1, never2] = [await mk(), await mk(), await mk(), await mk()];
    await s.recordSightings([
      { uuid: old, at: "2025-05-05T00:00:00.000Z", currentTarget: "t-1" },
      { uuid: fresh, at: "2025-05-06T00:00:00.000Z", currentTarget: "t-2" },
    ]);
    const never = [never1, never2].sort();
    const list = async (sort: "lastSeen" | "target", desc: boolean, limit = 50, offset = 0) =>
      (await s.searchDevices({ hardwareId: hw, sort, desc, limit, offset, offlineBefore: new Date().toISOString() })).devices.map((d) => d.uuid);
    for (const sort of ["lastSeen", "target"] as const) {
      expect(await list(sort, false)).toEqual([old, fresh, ...never]);
      expect(await list(sort, true)).toEqual([fresh, old, ...never.toReversed()]);
      // Pages of one split the ties by uuid the same way.
      const pages = [];
      for (let i = 0; i < 4; i++) pages.push(...(await list(sort, true, 1, i)));
      expect(pages).toEqual(await list(sort, true));
    }
  });

  test("searchDevices(): uuidFrom and uuidTo keep the devices of a uuid range, both ends included, as listDevices pages them", async () => {
    const s = await open();
    const hw = `hw-${uniq()}`;
    await Promise.all(Array.from({ length: 6 }, (_, i) => s.putDevice(aDevice({ name: `range-${i}-${hw}`, hardwareId: hw }))));
    const mine = (await s.searchDevices({ hardwareId: hw, sort: "uuid", offlineBefore: "2000-01-01T00:00:00.000Z" })).devices.map((x) => x.uuid);
    expect(mine.length).toBe(6);
    const range = await s.searchDevices({ hardwareId: hw, uuidFrom: mine[1], uuidTo: mine[4], sort: "uuid", offlineBefore: "2000-01-01T00:00:00.000Z" });
    expect(range.devices.map((x) => x.uuid)).toEqual(mine.slice(1, 5));
    expect(range.total).toBe(4);
    expect((await s.searchDevices({ hardwareId: hw, uuidFrom: mine[5], sort: "uuid", offlineBefore: "2000-01-01T00:00:00.000Z" })).devices.map((x) => x.uuid)).toEqual(mine.slice(5));
  });

  test("searchDevices(): uuidAfter pages by uuid as listDevices does, the given uuid left out, the page the same order", async () => {
    const s = await open();
    const hw = `hw-${uniq()}`;
    await Promise.all(Array.from({ length: 5 }, (_, i) => s.putDevice(aDevice({ name: `after-${i}-${hw}`, hardwareId: hw }))));
    const at = "2000-01-01T00:00:00.000Z";
    const mine = (await s.searchDevices({ hardwareId: hw, sort: "uuid", offlineBefore: at })).devices.map((x) => x.uuid);
    const page = async (after: string | undefined) =>
      (await s.searchDevices({ hardwareId: hw, sort: "uuid", limit: 2, offlineBefore: at, ...(after ? { uuidAfter: after } : {}) })).devices.map((x) => x.uuid);
    expect(await page(undefined)).toEqual(mine.slice(0, 2));
    expect(await page(mine[1])).toEqual(mine.slice(2, 4));
    expect(await page(mine[3])).toEqual(mine.slice(4));
    expect(await page(mine[4])).toEqual([]);
    // The order listDevices pages in.
    expect((await s.listDevices({ limit: 10000 })).map((d) => d.uuid).filter((u) => mine.includes(u))).toEqual(mine);
  });

  test("setDeviceLabels() sets, replaces and removes labels; re-registration and check-ins keep them", async () => {
    const s = await open();
    const d = aDevice({ tagsFromDevice: true });
    expect((await s.putDevice(d)).labels).toEqual({});
    expect((await s.setDeviceLabels(d.uuid, { region: "eu", "site/floor": "3" }, []))!.labels).toEqual({ region: "eu", "site/floor": "3" });
    expect((await s.setDeviceLabels(d.uuid, { region: "us", ring: "canary" }, ["site/floor", "absent"]))!.labels).toEqual({ region: "us", ring: "canary" });
    await s.putDevice({ ...d, certSerial: "CAFE" });
    await s.recordSightings([{ uuid: d.uuid, at: new Date().toISOString(), tags: ["x"] }]);
    expect((await s.getDevice(d.uuid))!.labels).toEqual({ region: "us", ring: "canary" });
    expect(await s.setDeviceLabels("unknown-uuid", { a: "b" }, [])).toBeUndefined();
    // Keys read back in code-point order on both backends (jsonb orders them by length first).
    expect(Object.keys((await s.setDeviceLabels(d.uuid, { zz: "1", aaa: "2" }, []))!.labels)).toEqual(["aaa", "region", "ring", "zz"]);
  });

  test("putDevice() with replaces writes only over what the caller saw", async () => {
    const s = await open();
    const d = aDevice({ certSerial: "01", replaces: null });
    expect((await s.putDevice(d)).certSerial).toBe("01");
    // A second "new" registration of the uuid, or one over a serial no longer there: nothing written.
    await expect(s.putDevice({ ...d, certSerial: "02", replaces: null })).rejects.toBeInstanceOf(DeviceRegisteredMeanwhileError);
    await expect(s.putDevice({ ...d, certSerial: "03", replaces: "0F" })).rejects.toBeInstanceOf(DeviceRegisteredMeanwhileError);
    expect((await s.getDevice(d.uuid))!.certSerial).toBe("01");
    expect((await s.putDevice({ ...d, certSerial: "04", replaces: "01" })).certSerial).toBe("04");
    // Two at once over the same serial: one is written.
    const racing = await Promise.allSettled(["05", "06"].map((serial) => s.putDevice({ ...d, certSerial: serial, replaces: "04" })));
    expect(racing.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(racing.filter((r) => r.status === "rejected" && r.reason instanceof DeviceRegisteredMeanwhileError)).toHaveLength(1);
    // Without replaces, as before: the last write wins; a revoked uuid stays refused as revoked.
    expect((await s.putDevice({ ...d, certSerial: "07", replaces: undefined })).certSerial).toBe("07");
    await s.revokeDevice(d.uuid, new Date().toISOString());
    await expect(s.putDevice({ ...d, certSerial: "08", replaces: "07" })).rejects.toBeInstanceOf(DeviceRevokedError);
  });

  test("setDeviceLabels() with a cap: refuses past it, lets a device over it come under it, and changes racing cannot both pass", async () => {
    const s = await open();
    const d = aDevice();
    await s.putDevice(d);
    expect((await s.setDeviceLabels(d.uuid, { a: "1", b: "2" }, [], 3))!.labels).toEqual({ a: "1", b: "2" });
    const over = await s.setDeviceLabels(d.uuid, { c: "3", d: "4" }, [], 3).catch((e: Error) => e);
    expect(over).toBeInstanceOf(TooManyLabelsError);
    expect((over as Error).message).toBe(`Device "${d.uuid}" would have 4 labels: at most 3 a device (it has 2; remove some first)`);
    expect((await s.getDevice(d.uuid))!.labels).toEqual({ a: "1", b: "2" });
    // Past the cap without one (as an older gateway could leave it), a change that adds none passes.
    await s.setDeviceLabels(d.uuid, { c: "3", d: "4", e: "5" }, []);
    expect(Object.keys((await s.setDeviceLabels(d.uuid, { a: "x" }, ["e"], 3))!.labels)).toEqual(["a", "b", "c", "d"]);
    // Eight changes at once, each within the cap alone: after the first, each would pass it.
    const e = aDevice();
    await s.putDevice(e);
    const racing = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => s.setDeviceLabels(e.uuid, { [`k${i}a`]: "1", [`k${i}b`]: "2" }, [], 3)));
    expect(racing.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(racing.filter((r) => r.status === "rejected" && r.reason instanceof TooManyLabelsError)).toHaveLength(7);
    expect(Object.keys((await s.getDevice(e.uuid))!.labels)).toHaveLength(2);
    expect(await s.setDeviceLabels("unknown-uuid", { a: "b" }, [], 3)).toBeUndefined();
  });

  test("queriesMatching() says of each query whether one device matches it, as queryDevices would list it, in order; none for a revoked or unknown device", async () => {
    const s = await open();
    const hw = `hwm-${uniq()}`;
    const d = (await s.putDevice(aDevice({ name: "Kiosk-Lyon", hardwareId: hw, tags: ["prod", "beta"] })))!;
    await s.setDeviceLabels(d.uuid, { region: "eu", "ring.v2": "canary" }, []);
    const other = (await s.putDevice(aDevice({ name: "sign", hardwareId: hw })))!;
    const at = new Date().toISOString();
    const [inIt, notIn] = [`in-${uniq()}`, `out-${uniq()}`];
    for (const name of [inIt, notIn]) await s.createGroup({ name, kind: "static", query: null, createdAt: at });
    await s.addGroupMembers(inIt, [d.uuid]);
    await s.addGroupMembers(notIn, [other.uuid]);
    const queries: FleetQuery[] = [
      { group: inIt },
      { group: notIn },
      { labels: { region: "eu", "ring.v2": "canary" } },
      { labels: { region: "us" } },
      { tags: ["prod", "beta"], hardwareId: hw },
      { tags: ["pro"] },
      { nameContains: "KIOSK" },
      { nameContains: "%" },
      {},
    ];
    const expected = [true, false, true, false, true, false, true, false, true];
    expect(await s.queriesMatching(d.uuid, queries)).toEqual(expected);
    // As queryDevices answers each.
    for (const [i, q] of queries.entries()) expect((await s.queryDevices(q)).includes(d.uuid)).toBe(expected[i]!);
    expect(await s.queriesMatching(d.uuid, [])).toEqual([]);
    expect(await s.queriesMatching("not-registered", queries.slice(0, 3))).toEqual([false, false, false]);
    // More queries than one statement takes: still in order.
    const many = Array.from({ length: 1100 }, (_, i) => (i % 3 ? { group: notIn } : { group: inIt }));
    expect(await s.queriesMatching(d.uuid, many)).toEqual(many.map((_, i) => i % 3 === 0));
    await s.revokeDevice(d.uuid, at);
    expect(await s.queriesMatching(d.uuid, queries)).toEqual(queries.map(() => false));
  });

  test("queryDevices() ANDs labels, tags, hardware id and name; revoked devices never match", async () => {
    const s = await open();
    const hw = `hwq-${uniq()}`;
    const mk = async (name: string, tags: string[], labels: Record<string, string>) => {
      const row = await s.putDevice(aDevice({ name, hardwareId: hw, tags }));
      await s.setDeviceLabels(row.uuid, labels, []);
      return row.uuid;
    };
    const a = await mk("Kiosk-Berlin", ["prod", "beta"], { region: "eu", "ring.v2": "canary" });
    const b = await mk("kiosk-paris", ["production"], { region: "eu" });
    const c = await mk("sign-boston", ["prod"], { region: "us", "ring.v2": "canary" });
    const gone = await mk("kiosk-gone", ["prod"], { region: "eu" });
    await s.revokeDevice(gone, new Date().toISOString());
    const sorted = (l: string[]) => [...l].sort();
    expect(await s.queryDevices({ hardwareId: hw })).toEqual(sorted([a, b, c]));
    expect(await s.queryDevices({ hardwareId: hw, labels: { region: "eu" } })).toEqual(sorted([a, b]));
    expect(await s.queryDevices({ hardwareId: hw, labels: { region: "eu", "ring.v2": "canary" } })).toEqual([a]);
    expect(await s.queryDevices({ hardwareId: hw, tags: ["prod"] })).toEqual(sorted([a, c]));
    expect(await s.queryDevices({ hardwareId: hw, tags: ["prod", "beta"] })).toEqual([a]);
    expect(await s.queryDevices({ hardwareId: hw, nameContains: "KIOSK" })).toEqual(sorted([a, b]));
    expect(await s.queryDevices({ hardwareId: hw, nameContains: "%" })).toEqual([]);
    expect(await s.queryDevices({ hardwareId: hw, labels: { region: "mars" } })).toEqual([]);
    const goneAt = (await s.getDevice(gone))!.revokedAt;
    expect(goneAt).not.toBeNull();
    expect(await s.knownDevices([a, gone, "nope", a])).toEqual(
      sorted([a, gone]).map((uuid) => ({ uuid, revokedAt: uuid === gone ? goneAt : null })),
    );
    // The dashboard's list takes the same queries as filters, ANDed with its own.
    const past = new Date(Date.now() - 3600_000).toISOString();
    const listed = await s.searchDevices({ hardwareId: hw, fleet: [{ labels: { region: "eu" } }, { tags: ["prod"] }], offlineBefore: past, sort: "uuid" });
    expect(listed.devices.map((x) => x.uuid)).toEqual(sorted([a, gone])); // the dashboard lists revoked devices too
    expect(listed.devices.find((x) => x.uuid === a)!.labels).toEqual({ region: "eu", "ring.v2": "canary" });
    expect((await s.searchDevices({ hardwareId: hw, tag: "prod", fleet: [{ nameContains: "boston" }], offlineBefore: past })).total).toBe(1);
  });

  test("tags match exactly on every backend: case counts, and an _ in a tag is no wildcard", async () => {
    // SQLite's LIKE ignored case: a rollout by `prod` took in devices tagged `Prod`, which no target
    // then matched (select-target.ts compares tags exactly), and they stayed pending for good.
    const s = await open();
    const hw = `hwt-${uniq()}`;
    const past = new Date(Date.now() - 3600_000).toISOString();
    const lower = (await s.putDevice(aDevice({ name: "Kiosk-lower", hardwareId: hw, tags: ["prod"] }))).uuid;
    const upper = (await s.putDevice(aDevice({ name: "kiosk-upper", hardwareId: hw, tags: ["Prod"] }))).uuid;
    const under = (await s.putDevice(aDevice({ name: "sign-under", hardwareId: hw, tags: ["eu_1"] }))).uuid;
    const dotted = (await s.putDevice(aDevice({ name: "sign-dotted", hardwareId: hw, tags: ["euX1"] }))).uuid;
    await s.recordSightings([{ uuid: dotted, at: new Date().toISOString(), tags: ["PROD"] }]);
    expect(await s.queryDevices({ hardwareId: hw, tags: ["prod"] })).toEqual([lower]);
    expect(await s.queryDevices({ hardwareId: hw, tags: ["Prod"] })).toEqual([upper]);
    expect(await s.queryDevices({ hardwareId: hw, tags: ["PROD"] })).toEqual([]); // only reported: not the gateway's
    expect(await s.queryDevices({ hardwareId: hw, tags: ["eu_1"] })).toEqual([under]);
    expect(await s.queriesMatching(lower, [{ tags: ["prod"] }, { tags: ["Prod"] }])).toEqual([true, false]);
    const byTag = async (tag: string) => {
      const r = await s.searchDevices({ hardwareId: hw, tag, offlineBefore: past, countRevoked: true });
      return { uuids: r.devices.map((d) => d.uuid), reportedOnly: r.reportedOnly };
    };
    expect(await byTag("prod")).toEqual({ uuids: [lower], reportedOnly: 0 });
    expect(await byTag("Prod")).toEqual({ uuids: [upper], reportedOnly: 0 });
    expect(await byTag("PROD")).toEqual({ uuids: [dotted], reportedOnly: 1 });
    expect(await byTag("eu_1")).toEqual({ uuids: [under], reportedOnly: 0 });
    // The search by name or uuid is meant to ignore case, on both.
    const byText = async (text: string) => (await s.searchDevices({ hardwareId: hw, text, offlineBefore: past, sort: "name" })).devices.map((d) => d.uuid);
    expect(await byText("KIOSK")).toEqual([lower, upper]);
    expect(await byText(upper.toUpperCase())).toEqual([upper]);
    expect(await s.queryDevices({ hardwareId: hw, nameContains: "KIOSK" })).toEqual([lower, upper].sort());
  });

  test("groups: created once, static members of registered devices only, listed without counting them, deleted with their members", async () => {
    const s = await open();
    const name = `g-${uniq()}`;
    const at = "2026-01-01T00:00:00.000Z";
    await s.createGroup({ name, kind: "static", query: null, createdAt: at });
    await expect(s.createGroup({ name, kind: "dynamic", query: "a=b", createdAt: at })).rejects.toThrow(GroupExistsError);
    expect(await s.getGroup(name)).toEqual({ name, kind: "static", query: null, createdAt: at });
    const [d1, d2] = [aDevice(), aDevice()];
    await s.putDevice(d1);
    await s.putDevice(d2);
    expect(await s.addGroupMembers(name, [d1.uuid, d2.uuid, "not-registered"])).toBe(2);
    expect(await s.addGroupMembers(name, [d1.uuid])).toBe(0);
    expect(await s.listGroupMembers(name)).toEqual([d1.uuid, d2.uuid].sort());
    // The rows as stored, no member count: a device's page lists every group at each load.
    expect((await s.listGroups()).find((g) => g.name === name)).toEqual({ name, kind: "static", query: null, createdAt: at });
    await s.revokeDevice(d2.uuid, new Date().toISOString());
    expect(await s.queryDevices({ group: name })).toEqual([d1.uuid]); // revoked members are no audience
    expect((await s.searchDevices({ fleet: [{ group: name }], offlineBefore: new Date(0).toISOString() })).total).toBe(2);
    expect(await s.removeGroupMembers(name, [d1.uuid, "not-registered"])).toBe(1);
    expect(await s.listGroupMembers(name)).toEqual([d2.uuid]);
    const dyn = `dyn-${uniq()}`;
    await s.createGroup({ name: dyn, kind: "dynamic", query: "region=eu", createdAt: at });
    expect((await s.listGroups()).find((g) => g.name === dyn)).toEqual({ name: dyn, kind: "dynamic", query: "region=eu", createdAt: at });
    expect(await s.deleteGroup(name)).toBe(true);
    expect(await s.deleteGroup(name)).toBe(false);
    expect(await s.getGroup(name)).toBeUndefined();
    // A group made again under the same name starts empty.
    await s.createGroup({ name, kind: "static", query: null, createdAt: at });
    expect(await s.listGroupMembers(name)).toEqual([]);
  });

  const aRollout = (over: Partial<RolloutRow> = {}): RolloutRow => {
    const at = new Date().toISOString();
    return {
      id: `r-${uniq()}`,
      targetVersion: `v-${uniq()}`,
      groupName: null,
      tag: "prod",
      waves: [1, 33.5, 100],
      soakS: 1800,
      maxFailuresPct: 5.5,
      healthWindowS: 600,
      pendingTimeoutS: 3600,
      installWindow: "Sat 02:00-04:00 Europe/Berlin",
      maxHoldS: null,
      rollbackOnHalt: true,
      state: "running",
      wave: 0,
      waveStartedAt: at,
      reason: null,
      revision: 1,
      acknowledgedFailures: 0,
      createdAt: at,
      updatedAt: at,
      ...over,
    };
  };

  test("createRollout() keeps every duration up to the longest a duration may be (MAX_DURATION_SECONDS)", async () => {
    const s = await open();
    const longest = MAX_DURATION_SECONDS;
    const r = aRollout({ soakS: longest, healthWindowS: longest, pendingTimeoutS: longest, maxHoldS: longest });
    await s.createRollout(r, [{ uuid: `m-${uniq()}`, wave: 0 }]);
    expect(await s.getRollout(r.id)).toEqual(r);
  });

  test("createRollout() stores the rollout and its members; one active rollout per version", async () => {
    const s = await open();
    const r = aRollout();
    const members = Array.from({ length: 2500 }, (_, i) => ({ uuid: `m-${String(i).padStart(5, "0")}`, wave: i < 25 ? 0 : i < 800 ? 1 : 2 }));
    await s.createRollout(r, members);
    expect(await s.getRollout(r.id)).toEqual(r);
    expect((await s.rolloutMembers(r.id)).length).toBe(2500);
    expect(await s.rolloutCounts(r.id)).toEqual([
      { wave: 0, status: "pending", devices: 25 },
      { wave: 1, status: "pending", devices: 775 },
      { wave: 2, status: "pending", devices: 1700 },
    ]);
    // A second active rollout of the same version is refused, and leaves nothing behind.
    const twin = aRollout({ targetVersion: r.targetVersion });
    await expect(s.createRollout(twin, [{ uuid: "x", wave: 0 }])).rejects.toThrow(RolloutConflictError);
    expect(await s.getRollout(twin.id)).toBeUndefined();
    expect(await s.rolloutMembers(twin.id)).toEqual([]);
    expect((await s.activeRollouts()).map((x) => x.id)).toContain(r.id);
    // Once completed, the version may be rolled out again.
    expect(await s.updateRollout(r.id, 1, { state: "completed" })).toMatchObject({ state: "completed", revision: 2 });
    await s.createRollout(twin, [{ uuid: "x", wave: 0 }]);
    expect((await s.activeRollouts()).map((x) => x.id)).toEqual(expect.arrayContaining([twin.id]));
    expect((await s.activeRollouts()).map((x) => x.id)).not.toContain(r.id);
    expect((await s.listRollouts()).map((x) => x.id)).toEqual(expect.arrayContaining([r.id, twin.id]));
    expect((await s.listRollouts({ active: true })).map((x) => x.id)).not.toContain(r.id);
  });

  test("gatingRollouts(): per target version its newest rollout, unless that one completed", async () => {
    const s = await open();
    const v = `gate-${uniq()}`;
    const at = (m: number) => new Date(Date.UTC(2026, 0, 1, 0, m)).toISOString();
    /** A rollout of `version` made at minute `m`, moved to `state`. */
    const made = async (version: string, m: number, state: "cancelled" | "completed") => {
      const r = aRollout({ targetVersion: version, createdAt: at(m) });
      await s.createRollout(r, [{ uuid: "g1", wave: 0 }]);
      await s.updateRollout(r.id, 1, { state });
      return r;
    };
    // v: an old cancelled rollout, then a newer one that completed: v gates nobody.
    await made(v, 1, "cancelled");
    await made(v, 2, "completed");
    // w: a completed rollout, then a newer one cancelled: w is gated by the cancelled one.
    const w = `${v}-w`;
    await made(w, 3, "completed");
    const cancelledW = await made(w, 4, "cancelled");
    const mine = (await s.gatingRollouts()).filter((r) => r.targetVersion === v || r.targetVersion === w);
    expect(mine.map((r) => [r.id, r.state])).toEqual([[cancelledW.id, "cancelled"]]);
  });

  test("updateRollout() applies a patch only at the expected revision (of two racing writers one wins)", async () => {
    const s = await open();
    const r = aRollout();
    await s.createRollout(r, []);
    expect((await s.getRollout(r.id))!.waveStarts).toBeUndefined(); // none given: a rollout from before they were kept
    const starts = [r.waveStartedAt, "2030-01-01T00:00:00.000Z"];
    const next = await s.updateRollout(r.id, 1, { wave: 1, waveStartedAt: "2030-01-01T00:00:00.000Z", waveStarts: starts, reason: "soaked", updatedAt: "2030-01-01T00:00:01.000Z" });
    expect(next).toMatchObject({ wave: 1, waveStartedAt: "2030-01-01T00:00:00.000Z", waveStarts: starts, reason: "soaked", revision: 2, updatedAt: "2030-01-01T00:00:01.000Z" });
    expect((await s.getRollout(r.id))!.waveStarts).toEqual(starts);
    expect(await s.updateRollout(r.id, 2, { acknowledgedFailures: 3 })).toMatchObject({ acknowledgedFailures: 3, revision: 3 });
    expect(await s.updateRollout(r.id, 1, { state: "paused" })).toBeUndefined();
    const race = await Promise.all([s.updateRollout(r.id, 3, { state: "paused" }), s.updateRollout(r.id, 3, { state: "halted", reason: "x" })]);
    expect(race.filter(Boolean)).toHaveLength(1);
    expect((await s.getRollout(r.id))!.revision).toBe(4);
    expect(await s.updateRollout("unknown", 1, { state: "paused" })).toBeUndefined();
  });

  test("updateRollout() with ifFailed applies only while the rollout has that many failed members (a resume accepts what it counted)", async () => {
    const s = await open();
    const r = aRollout({ state: "halted" });
    await s.createRollout(r, [{ uuid: "a", wave: 0 }, { uuid: "b", wave: 0 }]);
    await s.updateRolloutDevices(r.id, [{ uuid: "a", status: "failed" }]);
    const ev = { rolloutId: r.id, at: new Date().toISOString(), kind: "resumed" as const, wave: 0, deviceUuid: null, reason: "the 1 failure so far" };
    // A failure recorded after the count (the tick's verdicts do not move the revision): not written, nor its event.
    await s.updateRolloutDevices(r.id, [{ uuid: "b", status: "failed" }], { revision: 1 });
    expect(await s.updateRollout(r.id, 1, { state: "running", acknowledgedFailures: 1, ifFailed: 1 }, [ev])).toBeUndefined();
    expect(await s.getRollout(r.id)).toMatchObject({ state: "halted", acknowledgedFailures: 0, revision: 1 });
    expect(await s.listRolloutEvents(r.id)).toEqual([]);
    expect(await s.updateRollout(r.id, 1, { state: "running", acknowledgedFailures: 2, ifFailed: 2 }, [{ ...ev, reason: "the 2 failures so far" }])).toMatchObject({ state: "running", acknowledgedFailures: 2, revision: 2 });
    expect((await s.listRolloutEvents(r.id)).map((e) => e.reason)).toEqual(["the 2 failures so far"]);
    expect("ifFailed" in (await s.getRollout(r.id))!).toBe(false);
  });

  test("rollout devices: changes in one batch, fields left out kept, null clears; filtered states and counts", async () => {
    const s = await open();
    const r = aRollout();
    await s.createRollout(r, [
      { uuid: "a", wave: 0 },
      { uuid: "b", wave: 1 },
      { uuid: "c", wave: 1 },
    ]);
    const hold = { kind: "lock" as const, until: "2030-01-01T00:00:00.000Z", at: "2029-12-31T00:00:00.000Z" };
    await s.updateRolloutDevices(r.id, [
      { uuid: "a", status: "succeeded", healthySince: "2029-01-01T00:00:00.000Z" },
      { uuid: "b", status: "failed", reason: "app httpd unhealthy" },
      { uuid: "c", hold, updatedAt: "2029-12-31T00:00:01.000Z" },
      { uuid: "not-a-member", status: "failed" },
    ]);
    const rows = await s.rolloutDeviceStates(r.id);
    expect(rows.map((x) => [x.uuid, x.status, x.reason, x.healthySince, x.hold])).toEqual([
      ["a", "succeeded", null, "2029-01-01T00:00:00.000Z", null],
      ["b", "failed", "app httpd unhealthy", null, null],
      ["c", "pending", null, null, hold],
    ]);
    expect(rows[2]).toMatchObject({ rolloutId: r.id, wave: 1, updatedAt: "2029-12-31T00:00:01.000Z" });
    // countRolloutDevices counts what rolloutDeviceStates lists, without a limit.
    expect(await s.countRolloutDevices(r.id)).toBe(3);
    expect(await s.countRolloutDevices(r.id, { held: true })).toBe(1);
    expect(await s.countRolloutDevices(r.id, { wave: 1 })).toBe(2);
    expect(await s.countRolloutDevices(r.id, { wave: 1, status: "failed" })).toBe(1);
    expect(await s.countRolloutDevices("unknown", { held: true })).toBe(0);
    // Only pending members change: a settled verdict is kept.
    await s.updateRolloutDevices(r.id, [{ uuid: "a", status: "failed", reason: "late" }, { uuid: "c", hold: null }]);
    expect((await s.rolloutDeviceStates(r.id, { wave: 0 }))[0]).toMatchObject({ status: "succeeded", reason: null, healthySince: "2029-01-01T00:00:00.000Z" });
    expect((await s.rolloutDeviceStates(r.id, { held: true })).map((x) => x.uuid)).toEqual([]);
    expect((await s.rolloutDeviceStates(r.id, { status: "failed" })).map((x) => x.uuid)).toEqual(["b"]);
    expect((await s.rolloutDeviceStates(r.id, { limit: 1, after: "a" })).map((x) => x.uuid)).toEqual(["b"]);
    // waiting: pending members with a reason (what they wait for), not failed or succeeded ones with theirs.
    await s.updateRolloutDevices(r.id, [{ uuid: "c", reason: "no target of version 2 for arm64-linux yet" }]);
    expect((await s.rolloutDeviceStates(r.id, { waiting: true })).map((x) => [x.uuid, x.reason])).toEqual([["c", "no target of version 2 for arm64-linux yet"]]);
    expect(await s.countRolloutDevices(r.id, { waiting: true })).toBe(1);
    expect(await s.countRolloutDevices(r.id, { held: true })).toBe(0);
    await s.updateRolloutDevices(r.id, [{ uuid: "c", reason: null }]);
    expect(await s.rolloutDeviceStates(r.id, { waiting: true })).toEqual([]);
    // revision: written only while the rollout is still at it (a pause committed meanwhile wins).
    expect(await s.updateRolloutDevices(r.id, [{ uuid: "c", status: "failed" }], { revision: r.revision + 1 })).toBe(false);
    expect((await s.rolloutDeviceStates(r.id, { status: "failed" })).map((x) => x.uuid)).toEqual(["b"]);
    expect(await s.updateRolloutDevices(r.id, [{ uuid: "c", reason: "checked" }], { revision: r.revision })).toBe(true);
    expect((await s.rolloutDeviceStates(r.id, { after: "b" }))[0]).toMatchObject({ uuid: "c", status: "pending", reason: "checked" });
    await s.updateRolloutDevices(r.id, [{ uuid: "c", reason: null }]);
    expect(await s.rolloutCounts(r.id)).toEqual([
      { wave: 0, status: "succeeded", devices: 1 },
      { wave: 1, status: "failed", devices: 1 },
      { wave: 1, status: "pending", devices: 1 },
    ]);
  });

  test("a rollout's transition and its events commit together: none when the revision no longer matches", async () => {
    const s = await open();
    const r = aRollout();
    const ev = (kind: "created" | "paused" | "halted", reason: string) => ({ rolloutId: r.id, at: new Date().toISOString(), kind, wave: 0, deviceUuid: null, reason });
    await s.createRollout(r, [{ uuid: "a", wave: 0 }], [ev("created", "c")]);
    await expect(s.createRollout(aRollout({ id: `${r.id}-twin`, targetVersion: r.targetVersion }), [], [ev("created", "twin")])).rejects.toThrow(RolloutConflictError);
    expect(await s.updateRollout(r.id, 1, { state: "paused" }, [ev("paused", "by an operator")])).toMatchObject({ state: "paused", revision: 2 });
    expect(await s.updateRollout(r.id, 1, { state: "halted" }, [ev("halted", "stale tick")])).toBeUndefined();
    expect((await s.listRolloutEvents(r.id)).map((e) => e.reason)).toEqual(["by an operator", "c"]);
    expect(await s.listRolloutEvents(`${r.id}-twin`)).toEqual([]);
  });

  test("a tick's verdicts and their events commit together: none when the revision no longer matches", async () => {
    // Written in two transactions, a failure between them kept the verdicts and lost their events for
    // good: the next tick does not judge a settled device again.
    const s = await open();
    const r = aRollout();
    await s.createRollout(r, [{ uuid: "a", wave: 0 }, { uuid: "b", wave: 0 }]);
    const failed = (uuid: string, reason: string) => ({ rolloutId: r.id, at: new Date().toISOString(), kind: "device-failed" as const, wave: 0, deviceUuid: uuid, reason });
    expect(await s.updateRolloutDevices(r.id, [{ uuid: "a", status: "failed", reason: "timeout" }], { revision: 1, events: [failed("a", "timeout")] })).toBe(true);
    expect((await s.listRolloutEvents(r.id, { device: true })).map((e) => [e.deviceUuid, e.reason])).toEqual([["a", "timeout"]]);
    // A pause committed meanwhile: neither the stale verdict nor its event.
    await s.updateRollout(r.id, 1, { state: "paused" });
    expect(await s.updateRolloutDevices(r.id, [{ uuid: "b", status: "failed" }], { revision: 1, events: [failed("b", "stale tick")] })).toBe(false);
    expect((await s.listRolloutEvents(r.id, { device: true })).map((e) => [e.deviceUuid, e.reason])).toEqual([["a", "timeout"]]);
    expect((await s.rolloutDeviceStates(r.id)).map((x) => [x.uuid, x.status])).toEqual([["a", "failed"], ["b", "pending"]]);
  });

  test("two replicas judging the same members: the first verdict stays, and each device's event is written once", async () => {
    // While the signer lease changes hands, the old holder's tick and the new one's may judge the
    // same pending members at the same revision.
    const s = await open();
    const r = aRollout();
    await s.createRollout(r, [{ uuid: "a", wave: 0 }, { uuid: "b", wave: 0 }, { uuid: "c", wave: 0 }]);
    const ev = (uuid: string, kind: "device-failed" | "device-succeeded", reason: string) => ({ rolloutId: r.id, at: new Date().toISOString(), kind, wave: 0, deviceUuid: uuid, reason });
    expect(await s.updateRolloutDevices(r.id, [{ uuid: "a", status: "failed", reason: "timeout" }], { revision: 1, events: [ev("a", "device-failed", "timeout")] })).toBe(true);
    expect(await s.updateRolloutDevices(r.id, [{ uuid: "a", status: "succeeded", reason: null }, { uuid: "b", status: "succeeded" }], {
      revision: 1,
      events: [ev("a", "device-succeeded", "late replica"), ev("b", "device-succeeded", "healthy")],
    })).toBe(true);
    expect((await s.rolloutDeviceStates(r.id)).map((x) => [x.uuid, x.status, x.reason])).toEqual([["a", "failed", "timeout"], ["b", "succeeded", null], ["c", "pending", null]]);
    expect((await s.listRolloutEvents(r.id, { device: true })).map((e) => [e.deviceUuid, e.reason])).toEqual([["b", "healthy"], ["a", "timeout"]]);
    // At the same time: one verdict for c and one event, whichever replica wrote first.
    await Promise.all([
      s.updateRolloutDevices(r.id, [{ uuid: "c", status: "failed" }], { revision: 1, events: [ev("c", "device-failed", "replica 1")] }),
      s.updateRolloutDevices(r.id, [{ uuid: "c", status: "succeeded" }], { revision: 1, events: [ev("c", "device-succeeded", "replica 2")] }),
    ]);
    const c = (await s.rolloutDeviceStates(r.id, { after: "b" }))[0]!;
    const cEvents = (await s.listRolloutEvents(r.id, { device: true })).filter((e) => e.deviceUuid === "c");
    expect(cEvents).toHaveLength(1);
    expect(cEvents[0]!.kind).toBe(c.status === "failed" ? "device-failed" : "device-succeeded");
  });

  test("rollout events are kept in order and listed newest first", async () => {
    const s = await open();
    const r = aRollout();
    await s.createRollout(r, [{ uuid: "a", wave: 0 }], [
      { rolloutId: r.id, at: "2030-01-01T00:00:00.000Z", kind: "created", wave: null, deviceUuid: null, reason: "by admin" },
      { rolloutId: r.id, at: "2030-01-01T00:00:01.000Z", kind: "wave-started", wave: 0, deviceUuid: null, reason: "1% (1 device)" },
    ]);
    const failed = { rolloutId: r.id, at: "2030-01-01T00:00:02.000Z", kind: "device-failed" as const, wave: 0, deviceUuid: "a", reason: "timeout" };
    await s.updateRolloutDevices(r.id, [{ uuid: "a", status: "failed", reason: "timeout" }], { events: [failed] });
    const events = await s.listRolloutEvents(r.id);
    expect(events.map((e) => [e.kind, e.wave, e.deviceUuid, e.reason])).toEqual([
      ["device-failed", 0, "a", "timeout"],
      ["wave-started", 0, null, "1% (1 device)"],
      ["created", null, null, "by admin"],
    ]);
    expect(events[0]!.id).toBeGreaterThan(events[1]!.id);
    expect((await s.listRolloutEvents(r.id, { limit: 1 })).map((e) => e.kind)).toEqual(["device-failed"]);
    expect((await s.listRolloutEvents(r.id, { device: false })).map((e) => e.kind)).toEqual(["wave-started", "created"]);
    expect((await s.listRolloutEvents(r.id, { device: true })).map((e) => e.kind)).toEqual(["device-failed"]);
  });

  test("pendingRolloutEvidence(): pending members of released waves with device facts, events since the rollout began, app states", async () => {
    const s = await open();
    const [a, b, c, late] = [aDevice(), aDevice(), aDevice(), aDevice()];
    for (const d of [a, b, c, late]) await s.putDevice(d);
    const old = anEvent({ eventType: { id: "EcuInstallationCompleted", version: 2 }, event: { correlationId: "old", success: false } });
    await s.appendEvents(a.uuid, [old]);
    await Bun.sleep(5); // received_at is a millisecond timestamp
    const r = aRollout({ createdAt: new Date().toISOString() });
    await s.createRollout(r, [
      { uuid: a.uuid, wave: 0 },
      { uuid: b.uuid, wave: 0 },
      { uuid: c.uuid, wave: 0 },
      { uuid: late.uuid, wave: 1 },
    ]);
    const started = anEvent({ eventType: { id: "EcuInstallationStarted", version: 2 }, event: { correlationId: "n" } });
    const done = anEvent({ eventType: { id: "EcuInstallationCompleted", version: 2 }, event: { correlationId: "n", success: true } });
    const deferred = anEvent({ eventType: { id: "UpdateDeferred", version: 1 }, event: { correlationId: "n" } });
    await s.appendEvents(a.uuid, [started, deferred, done]);
    await s.appendEvents(late.uuid, [anEvent()]);
    await s.appendEvents(b.uuid, [anEvent({ eventType: { id: "EcuDownloadStarted", version: 2 } })]); // not evidence
    await s.recordSightings([{ uuid: a.uuid, at: "2030-01-01T00:00:00.000Z", currentTarget: "t-2" }]);
    const states = { deviceTime: "t", apps: { httpd: { uri: "r/x@sha256:1", state: "healthy" as const, services: [] } } };
    await s.putAppsStates(a.uuid, states);
    const hold = { kind: "window" as const, until: null, at: "2030-01-01T00:00:00.000Z" };
    await s.updateRolloutDevices(r.id, [{ uuid: c.uuid, status: "succeeded" }, { uuid: a.uuid, healthySince: "2030-01-01T00:00:00.000Z", hold }]);
    const ev = await s.pendingRolloutEvidence(r.id, 0);
    expect(ev.map((e) => e.uuid)).toEqual([a.uuid, b.uuid].sort());
    const ea = ev.find((e) => e.uuid === a.uuid)!;
    expect(ea).toMatchObject({ wave: 0, healthySince: "2030-01-01T00:00:00.000Z", hold, reason: null, hardwareId: a.hardwareId, tags: a.tags, currentTarget: "t-2", deviceStatus: "up-to-date", lastSeen: "2030-01-01T00:00:00.000Z", revokedAt: null, appsStates: states });
    expect(ea.events.map((e) => e.event)).toEqual([deferred, done]); // install outcomes and deferrals only
    expect(typeof ea.appsStatesAt).toBe("string");
    expect(ev.find((e) => e.uuid === b.uuid)).toMatchObject({ events: [], appsStates: null, appsStatesAt: null, deviceStatus: "updating" });
    expect((await s.pendingRolloutEvidence(r.id, 1)).map((e) => e.uuid)).toContain(late.uuid);
  });

  // Last: it removes every event stored before it, whoever's.
  test("pruneEvents() removes the oldest events received before the cutoff, at most `limit` a call, and nothing newer, past events stamped in the future", async () => {
    const s = await open();
    const d = aDevice();
    await s.putDevice(d);
    // Stored first, more than `limit` of them, while the gateway's clock ran a year ahead: they took
    // every place of the oldest `limit` by arrival, and nothing was ever removed again.
    const ahead = [anEvent(), anEvent(), anEvent()];
    setSystemTime(new Date(Date.now() + 365 * 86400_000));
    try {
      await s.appendEvents(d.uuid, ahead);
    } finally {
      setSystemTime();
    }
    const old = [anEvent(), anEvent(), anEvent()];
    await s.appendEvents(d.uuid, old);
    await Bun.sleep(5); // received_at is a millisecond timestamp
    const cutoff = new Date().toISOString();
    await Bun.sleep(5);
    const kept = anEvent();
    await s.appendEvents(d.uuid, [kept]);
    expect(await s.pruneEvents("2000-01-01T00:00:00.000Z", 100)).toBe(0); // nothing that old
    // Every event before the cutoff goes, `limit` at a time; a call that removes none means none is left.
    expect(await s.pruneEvents(cutoff, 2)).toBe(2);
    let removed = 2;
    for (let n = 1; n > 0; removed += n) n = await s.pruneEvents(cutoff, 2);
    expect(removed).toBeGreaterThanOrEqual(old.length);
    expect((await s.listEvents(d.uuid)).map((e) => e.event)).toEqual([...ahead, kept]);
    expect(await s.countEvents()).toBe(ahead.length + 1);
    expect(await s.pruneEvents(cutoff, 2)).toBe(0);
  });
}
