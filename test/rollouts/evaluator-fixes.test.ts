/**
 * Rollout verdicts in the corners a reviewer found them wrong: a version published for one
 * hardware id of a mixed audience, a one-shot service that exited 0 beside one still starting, the
 * holds of a cancelled rollout, the pending timeout of a wave released before an `advance`, a
 * pause that lands while the tick judges the devices, a failure after the tick wrote its verdicts.
 * The service runs over a real SQLite store and TUF repository on a movable clock; devices report
 * through the store as the device routes would.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AppsStates, DeviceEvent } from "../../lib/api/device.ts";
import { EMPTY_SHA256, type TargetEntry } from "../../lib/api/target.ts";
import { MemoryTufStorage } from "../../gateway/ota/memory-storage.ts";
import { TufRepo } from "../../gateway/ota/repo.ts";
import { RolloutEngine, type EngineDeps } from "../../gateway/rollouts/engine.ts";
import { Rollouts } from "../../gateway/rollouts/service.ts";
import { SqliteStore } from "../../gateway/store/sqlite.ts";
import type { Store } from "../../gateway/store/types.ts";

let dir: string;
const stores: Store[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "rollout-fixes-"));
});
afterAll(async () => {
  for (const s of stores) await s.close();
  await rm(dir, { recursive: true, force: true });
});

const uri = (app: string, version: string) => `reg.example/m/${app}@sha256:${version.padStart(64, "0")}`;

/** A target of `version` for `hwid`, tag m, with `apps`, made at `createdAt`. */
const entry = (version: string, hwid: string, createdAt: number, apps = ["web"]): TargetEntry => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: {
    version,
    hardwareIds: [hwid],
    tags: ["m"],
    createdAt: new Date(createdAt).toISOString(),
    docker_compose_apps: Object.fromEntries(apps.map((a) => [a, { uri: uri(a, version) }])),
  },
});

let n = 0;
/** Devices tagged m (`hwids`: one hardware id each), version 1 published, the service on a movable clock. */
async function setup(hwids: string[]) {
  n++;
  const store = await SqliteStore.open(join(dir, `gw${n}.db`));
  stores.push(store);
  const tuf = await TufRepo.open({ storage: new MemoryTufStorage(), keysDir: join(dir, `keys${n}`) });
  const clock = { now: Date.now() };
  await tuf.addTargets({ "amd64-linux-1": entry("1", "amd64-linux", clock.now - 60_000) });
  const devices = hwids.map((hw, i) => ({ uuid: `00000000-0000-4000-8000-${String(n * 1000 + i).padStart(12, "0")}`, hw }));
  for (const d of devices) await store.putDevice({ uuid: d.uuid, name: `d${i(d.uuid)}`, hardwareId: d.hw, factory: "main", tags: ["m"], certSerial: "01" });
  const rollouts = new Rollouts({ store, tuf, tickMs: 0, viewPollMs: 0, now: () => clock.now });
  await rollouts.start();
  let e = 0;
  const ev = (uuid: string, type: string, extra: Partial<DeviceEvent["event"]> = {}): DeviceEvent => ({
    id: `e${e++}`,
    deviceTime: new Date(clock.now).toISOString(),
    eventType: { id: type, version: 2 },
    event: { correlationId: `u-${uuid}`, targetName: `amd64-linux-8`, version: "8", ...extra },
  });
  const report = {
    /** The device installed version 8 (target `name`) and reports `apps` (default: web healthy). */
    updated: async (uuid: string, name: string, apps?: AppsStates["apps"]) => {
      await store.appendEvents(uuid, [ev(uuid, "EcuInstallationCompleted", { success: true, targetName: name })]);
      await store.putAppsStates(uuid, { deviceTime: new Date(clock.now).toISOString(), apps: apps ?? { web: { uri: uri("web", "8"), state: "healthy", services: [{ name: "web", state: "running" }] } } });
      await store.recordSightings([{ uuid, at: new Date(clock.now).toISOString(), currentTarget: name }]);
    },
    deferred: (uuid: string) => store.appendEvents(uuid, [ev(uuid, "UpdateDeferred", { details: JSON.stringify({ reason: "lock", heldSince: new Date(clock.now).toISOString() }) })]),
  };
  return { store, tuf, rollouts, clock, devices, report };
}
const i = (uuid: string) => Number(uuid.slice(-4));

/** The engine's store: each call passed on to `store`, but those `over` gives. */
const engineStore = (store: Store, over: Partial<EngineDeps["store"]>): EngineDeps["store"] => ({
  activeRollouts: () => store.activeRollouts(),
  pendingRolloutEvidence: (id, wave) => store.pendingRolloutEvidence(id, wave),
  updateRolloutDevices: (id, changes, opts) => store.updateRolloutDevices(id, changes, opts),
  rolloutCounts: (id) => store.rolloutCounts(id),
  updateRollout: (id, revision, patch, events) => store.updateRollout(id, revision, patch, events),
  ...over,
});

test("a version published for one hardware id of a mixed tag: the other's devices wait for their target, they do not time out", async () => {
  const { tuf, rollouts, clock, devices, report } = await setup(["amd64-linux", "amd64-linux", "amd64-linux", "amd64-linux", "arm64-linux", "arm64-linux"]);
  const r = await rollouts.create({ target: "8", tag: "m", waves: [100], pendingTimeout: "3s", healthWindow: "1s", maxFailures: 20, soak: "1s" });
  clock.now += 500;
  // Version 8 for amd64 only: the arm64 build is still in CI.
  await tuf.addTargets({ "amd64-linux-8": entry("8", "amd64-linux", clock.now) });
  for (const d of devices.filter((d) => d.hw === "amd64-linux")) await report.updated(d.uuid, "amd64-linux-8");
  await rollouts.tick();
  clock.now += 4_000; // past the pending timeout since the amd64 publication
  await rollouts.tick();
  const shown = (await rollouts.show(r.id))!;
  expect(shown.failures).toEqual([]);
  expect(shown).toMatchObject({ state: "running", reason: null });
  const arm = devices.filter((d) => d.hw === "arm64-linux").map((d) => d.uuid).sort();
  expect(shown.waiting.map((w) => [w.uuid, w.reason])).toEqual(arm.map((u) => [u, "no target of version 8 for arm64-linux yet"]));
  expect(shown.counts).toEqual([{ wave: 0, status: "pending", devices: 2 }, { wave: 0, status: "succeeded", devices: 4 }]);

  // The arm64 build lands: their clock starts then, and they no longer wait for it.
  await tuf.addTargets({ "arm64-linux-8": entry("8", "arm64-linux", clock.now) });
  await rollouts.tick();
  expect((await rollouts.show(r.id))!.waiting).toEqual([]);
  clock.now += 3_500;
  await rollouts.tick();
  const late = (await rollouts.show(r.id))!;
  expect(late.failures.map((f) => f.reason)).toEqual(["timeout: the update did not complete in time", "timeout: the update did not complete in time"]);
  expect(late.state).toBe("halted");
});

test("a one-shot service that exited 0 beside one whose healthcheck is still starting: the device waits, then succeeds", async () => {
  const { tuf, rollouts, clock, devices, report } = await setup(["amd64-linux"]);
  const r = await rollouts.create({ target: "8", tag: "m", waves: [100], pendingTimeout: "1h", healthWindow: "1s", soak: "1s" });
  await tuf.addTargets({ "amd64-linux-8": entry("8", "amd64-linux", clock.now, ["shop"]) });
  const shop = (state: "healthy" | "unhealthy", health: string) => ({
    shop: { uri: uri("shop", "8"), state, services: [{ name: "migrate", state: "exited", status: "Exited (0) 2 seconds ago" }, { name: "web", state: "running", status: "Up 3 seconds (health: starting)", health }] },
  });
  const d = devices[0]!.uuid;
  await report.updated(d, "amd64-linux-8", shop("unhealthy", "starting"));
  await rollouts.tick();
  let shown = (await rollouts.show(r.id))!;
  expect(shown.failures).toEqual([]);
  expect(shown.counts).toEqual([{ wave: 0, status: "pending", devices: 1 }]);
  // web passes its healthcheck: fioup reports the app healthy, and after the health window the device succeeded.
  clock.now += 500;
  await report.updated(d, "amd64-linux-8", shop("healthy", "healthy"));
  await rollouts.tick();
  clock.now += 1_500;
  await rollouts.tick();
  shown = (await rollouts.show(r.id))!;
  expect(shown.counts).toEqual([{ wave: 0, status: "succeeded", devices: 1 }]);
});

test("a cancelled rollout lists no deferred installs: the device held by a lock is never offered the version", async () => {
  const { tuf, rollouts, clock, devices, report } = await setup(["amd64-linux", "amd64-linux"]);
  const r = await rollouts.create({ target: "8", tag: "m", waves: [100], pendingTimeout: "1h", healthWindow: "1s", maxFailures: 10 });
  await tuf.addTargets({ "amd64-linux-8": entry("8", "amd64-linux", clock.now) });
  const [held, broken] = devices.map((d) => d.uuid) as [string, string];
  await report.deferred(held);
  await report.updated(broken, "amd64-linux-8", { web: { uri: uri("web", "8"), state: "unhealthy", services: [{ name: "web", state: "restarting" }] } });
  await rollouts.tick();
  const halted = (await rollouts.show(r.id))!;
  expect(halted.state).toBe("halted");
  expect(halted.holds.map((h) => [h.uuid, h.hold?.kind])).toEqual([[held, "lock"]]);
  const cancelled = await rollouts.cancel(r.id);
  expect(cancelled.state).toBe("cancelled");
  expect(cancelled.holds).toEqual([]);
  expect((await rollouts.show(r.id))!.holds).toEqual([]);
});

test("advance keeps the pending timeout of the earlier wave's devices: they time out pending-timeout after their own wave started", async () => {
  const { tuf, store, rollouts, clock } = await setup(["amd64-linux", "amd64-linux", "amd64-linux", "amd64-linux"]);
  await tuf.addTargets({ "amd64-linux-8": entry("8", "amd64-linux", clock.now - 1_000) });
  const r = await rollouts.create({ target: "8", tag: "m", waves: [50, 100], pendingTimeout: "4s", healthWindow: "1s", maxFailures: 100 });
  const wave0 = (await store.rolloutMembers(r.id)).filter((m) => m.wave === 0).map((m) => m.uuid).sort();
  clock.now += 2_500;
  await rollouts.advance(r.id);
  clock.now += 2_000; // 4.5 s after wave 1 started, 2 s after wave 2
  await rollouts.tick();
  const shown = (await rollouts.show(r.id))!;
  expect(shown.failures.map((f) => [f.uuid, f.reason])).toEqual(wave0.map((u) => [u, "timeout: the update did not complete in time"]));
  expect(shown.counts).toEqual([{ wave: 0, status: "failed", devices: 2 }, { wave: 1, status: "pending", devices: 2 }]);
  // Resume after a pause still starts every released wave's clock again: nobody timed out while paused.
  await rollouts.pause(r.id);
  clock.now += 10_000;
  await rollouts.resume(r.id);
  clock.now += 3_000;
  await rollouts.tick();
  expect((await rollouts.show(r.id))!.counts).toEqual([{ wave: 0, status: "failed", devices: 2 }, { wave: 1, status: "pending", devices: 2 }]);
});

test("a pause committed while the tick judges the devices wins: nobody times out while paused", async () => {
  const { tuf, store, rollouts, clock, devices } = await setup(["amd64-linux"]);
  await tuf.addTargets({ "amd64-linux-8": entry("8", "amd64-linux", clock.now) });
  const r = await rollouts.create({ target: "8", tag: "m", waves: [100], pendingTimeout: "2s", healthWindow: "1s", maxFailures: 100 });
  clock.now += 3_000;
  // The operator's pause lands after the tick read the rollout as running, before it writes its verdicts.
  const racing = engineStore(store, {
    pendingRolloutEvidence: async (id, wave) => {
      await rollouts.pause(id);
      return store.pendingRolloutEvidence(id, wave);
    },
  });
  const engine = new RolloutEngine({ store: racing, targets: () => tuf.targets(), changed: async () => {}, now: () => clock.now });
  await engine.tick();
  let shown = (await rollouts.show(r.id))!;
  expect(shown.state).toBe("paused");
  expect(shown.counts).toEqual([{ wave: 0, status: "pending", devices: 1 }]);
  await rollouts.tick();
  expect((await rollouts.show(r.id))!.counts).toEqual([{ wave: 0, status: "pending", devices: 1 }]);
  // Once resumed, its clock runs again from the resume.
  await rollouts.resume(r.id);
  clock.now += 2_500;
  await rollouts.tick();
  shown = (await rollouts.show(r.id))!;
  expect(shown.failures.map((f) => [f.uuid, f.reason])).toEqual([[devices[0]!.uuid, "timeout: the update did not complete in time"]]);
});

test("a tick whose verdicts are written keeps their events, whatever fails after the write", async () => {
  const { tuf, store, rollouts, clock, devices } = await setup(["amd64-linux"]);
  await tuf.addTargets({ "amd64-linux-8": entry("8", "amd64-linux", clock.now) });
  const r = await rollouts.create({ target: "8", tag: "m", waves: [100], pendingTimeout: "2s", healthWindow: "1s", maxFailures: 100 });
  clock.now += 3_000;
  // The verdicts commit, then the connection drops before the tick hears so: written apart, the
  // timeout's event was never written, and no later tick judges the device again to write it.
  const dropping = engineStore(store, {
    updateRolloutDevices: async (id, changes, opts) => {
      await store.updateRolloutDevices(id, changes, opts);
      throw new Error("Connection closed");
    },
  });
  const logs: string[] = [];
  await new RolloutEngine({ store: dropping, targets: () => tuf.targets(), changed: async () => {}, now: () => clock.now, log: (l) => logs.push(l) }).tick();
  expect(logs).toEqual([`rollout ${r.id}: tick failed: Connection closed`]);
  await rollouts.tick();
  expect((await rollouts.show(r.id))!.counts).toEqual([{ wave: 0, status: "failed", devices: 1 }]);
  const events = await store.listRolloutEvents(r.id, { device: true });
  expect(events.map((e) => [e.kind, e.deviceUuid, e.reason])).toEqual([["device-failed", devices[0]!.uuid, "timeout: the update did not complete in time"]]);
});

test("a halt just over the limit prints a rate that reads over it: 5.05%, not 5%", async () => {
  const { store, tuf, rollouts, clock } = await setup(["amd64-linux"]);
  const r = await rollouts.create({ target: "8", tag: "m", waves: [100], maxFailures: 5 });
  // 101 of 2001 devices failed, as the store would count them.
  const counting = engineStore(store, {
    pendingRolloutEvidence: async () => [],
    updateRolloutDevices: async () => true,
    rolloutCounts: async () => [{ wave: 0, status: "failed", devices: 101 }, { wave: 0, status: "pending", devices: 1900 }],
  });
  await new RolloutEngine({ store: counting, targets: () => tuf.targets(), changed: async () => {}, now: () => clock.now }).tick();
  expect((await rollouts.show(r.id))!).toMatchObject({ state: "halted", reason: "halted at 5.05% failures (101 of 2001 devices in wave 1), over the 5% limit" });
});

test("a rate exactly at the limit does not halt (7 of 100 at 7%: 7.000000000000001 in floating point); one more device does, and a fractional limit is said as given", async () => {
  const { store, tuf, rollouts, clock } = await setup(["amd64-linux"]);
  const atLimit = await rollouts.create({ target: "8", tag: "m", waves: [100], maxFailures: 7 });
  const counts = (failed: number, pending: number) =>
    engineStore(store, {
      pendingRolloutEvidence: async () => [],
      updateRolloutDevices: async () => true,
      rolloutCounts: async () => [{ wave: 0, status: "failed", devices: failed }, { wave: 0, status: "pending", devices: pending }],
    });
  await new RolloutEngine({ store: counts(7, 93), targets: () => tuf.targets(), changed: async () => {}, now: () => clock.now }).tick();
  expect((await rollouts.show(atLimit.id))!.state).toBe("running");
  await new RolloutEngine({ store: counts(8, 92), targets: () => tuf.targets(), changed: async () => {}, now: () => clock.now }).tick();
  expect((await rollouts.show(atLimit.id))!).toMatchObject({ state: "halted", reason: "halted at 8% failures (8 of 100 devices in wave 1), over the 7% limit" });
});

test("a fractional limit is said as it was given: over the 0.25% limit, not the 0.3% one", async () => {
  const { store, tuf, rollouts, clock } = await setup(["amd64-linux"]);
  const r = await rollouts.create({ target: "8", tag: "m", waves: [100], maxFailures: 0.25 });
  const counting = engineStore(store, {
    pendingRolloutEvidence: async () => [],
    updateRolloutDevices: async () => true,
    rolloutCounts: async () => [{ wave: 0, status: "failed", devices: 7 }, { wave: 0, status: "pending", devices: 2493 }],
  });
  await new RolloutEngine({ store: counting, targets: () => tuf.targets(), changed: async () => {}, now: () => clock.now }).tick();
  expect((await rollouts.show(r.id))!).toMatchObject({ state: "halted", reason: "halted at 0.3% failures (7 of 2500 devices in wave 1), over the 0.25% limit" });
});
