/**
 * The rollout engine over real stores (SQLite, and PostgreSQL from the harness) and a real TUF
 * repository; devices report through the store as the device routes would. The clock is injected
 * so soak and health windows pass in milliseconds.
 */
import { afterAll, beforeAll, describe, expect, setSystemTime, test } from "bun:test";
import { mkdtemp, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DeviceEvent } from "../../lib/api/device.ts";
import { startPostgres, type PostgresHandle } from "../../test/harness/postgres.ts";
import { MemoryTufStorage } from "../ota/memory-storage.ts";
import { TufRepo } from "../ota/repo.ts";
import { PostgresStore } from "../store/postgres.ts";
import { SqliteStore } from "../store/sqlite.ts";
import type { Store } from "../store/types.ts";
import { targetEntry } from "../../test/rollouts/_fixtures.ts";
import { RolloutNotFoundError, RolloutStateError, TargetsKeyOfflineError } from "./errors.ts";
import { Rollouts } from "./service.ts";
import { renderRollout } from "../commands/_rollouts.ts";
import { RolloutPage } from "../ui/pages/rollouts.tsx";

const min = 60_000;
let dir: string;
let pg: PostgresHandle;
const stores: Store[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gw-rollouts-"));
  pg = await startPostgres();
});
afterAll(async () => {
  for (const s of stores) await s.close();
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
const uuid = (i: number) => `00000000-0000-4000-8000-${String(n * 1000 + i).padStart(12, "0")}`;

/** A fresh fleet of `count` devices tagged main, a TUF repo with targets 1 and 2, and the service on a movable clock. */
async function setup(open: () => Promise<Store>, count: number) {
  n++;
  const store = await open();
  stores.push(store);
  const keysDir = join(dir, `keys${n}`);
  const tuf = await TufRepo.open({ storage: new MemoryTufStorage(), keysDir });
  await tuf.addTargets({ "hw-1": targetEntry("1"), "hw-2": targetEntry("2") });
  const devices = Array.from({ length: count }, (_, i) => uuid(i));
  for (const d of devices) await store.putDevice({ uuid: d, name: d.slice(-4), hardwareId: "amd64-linux", factory: "main", tags: ["main"], certSerial: "01" });
  const clock = { now: Date.now() };
  const counted: string[] = [];
  const rollouts = new Rollouts({ store, tuf, tickMs: 0, viewPollMs: 0, now: () => clock.now, counted: (k) => counted.push(k) });
  await rollouts.start();
  const timestamp = async () => JSON.parse(new TextDecoder().decode(await tuf.metadata("timestamp.json"))).signed.version as number;
  let e = 0;
  const ev = (type: string, extra: Partial<DeviceEvent["event"]> = {}): DeviceEvent => ({
    id: `e${e++}`,
    deviceTime: new Date().toISOString(),
    eventType: { id: type, version: 2 },
    event: { correlationId: "u", targetName: "hw-2", version: "2", ...extra },
  });
  /** The device installs version 2 and its app runs healthy (or fails its start and rolls back). */
  const report = {
    updated: async (d: string) => {
      await store.appendEvents(d, [ev("EcuInstallationCompleted", { success: true })]);
      await store.putAppsStates(d, { deviceTime: new Date().toISOString(), apps: { web: { uri: targetEntry("2").custom.docker_compose_apps.web!.uri, state: "healthy", services: [{ name: "web", state: "running" }] } } });
      await store.recordSightings([{ uuid: d, at: new Date().toISOString(), currentTarget: "hw-2" }]);
    },
    rolledBack: (d: string) =>
      store.appendEvents(d, [ev("EcuInstallationCompleted", { success: false, details: JSON.stringify({ phase: "start", error: 'service "web" is unhealthy', rolledBackTo: "hw-1" }) })]),
    deferred: (d: string, until: string) => store.appendEvents(d, [ev("UpdateDeferred", { details: JSON.stringify({ reason: "window", until, heldSince: new Date().toISOString() }) })]),
  };
  return { store, tuf, keysDir, rollouts, clock, devices, counted, timestamp, report };
}

/**
 * `store` as another Rollouts uses it, with `between` committed once, after its first `method` call
 * has read and before that call answers: another replica's write landing between a read and a write.
 */
function interposed(store: Store, method: "getRollout" | "rolloutCounts", between: (id: string) => Promise<unknown>): Store {
  let done = false;
  return new Proxy(store, {
    get(s, k) {
      const v = Reflect.get(s, k);
      if (typeof v !== "function") return v;
      if (k !== method) return v.bind(s);
      return async (id: string) => {
        const answer = await v.call(s, id);
        if (!done) (done = true), await between(id);
        return answer;
      };
    },
  });
}

function suite(open: () => Promise<Store>) {
  test("waves advance by themselves once soaked and settled; views release the version wave by wave; it completes", async () => {
    const { rollouts, clock, devices, counted, timestamp, report, store } = await setup(open, 20);
    const created = await rollouts.create({ target: "2", tag: "main", waves: [10, 50, 100], soak: "30m", healthWindow: "10m", maxFailures: 10 });
    expect(created).toMatchObject({ state: "running", wave: 0, counts: [ { wave: 0, status: "pending", devices: 2 }, { wave: 1, status: "pending", devices: 8 }, { wave: 2, status: "pending", devices: 10 } ] });
    const members = await store.rolloutMembers(created.id);
    const inWave = (w: number) => members.filter((m) => m.wave === w).map((m) => m.uuid);
    expect(members).toHaveLength(20);
    expect(rollouts.view(inWave(0)[0]!)).toMatchObject({ hideVersions: [], annotate: { "2": { rollout: created.id } } });
    expect(rollouts.view(inWave(1)[0]!)).toMatchObject({ hideVersions: ["2"], annotate: {} });
    expect(rollouts.view("not-a-member")).toMatchObject({ hideVersions: ["2"] });

    for (const d of inWave(0)) await report.updated(d);
    await rollouts.tick();
    expect((await rollouts.show(created.id))!.wave).toBe(0); // healthy, but not for 10 minutes yet
    clock.now += 11 * min;
    await rollouts.tick();
    let r = (await rollouts.show(created.id))!;
    expect(r.counts.find((c) => c.wave === 0 && c.status === "succeeded")?.devices).toBe(2);
    expect(r.wave).toBe(0); // settled, soak (30 min) not over
    const before = await timestamp();
    clock.now += 20 * min;
    await rollouts.tick();
    r = (await rollouts.show(created.id))!;
    expect(r).toMatchObject({ state: "running", wave: 1, reason: "wave 1 settled and soaked 1800 s: 2 succeeded, 0 failed (0%)" });
    expect(r.events.map((e) => e.kind).slice(0, 2)).toEqual(["wave-started", "wave-advanced"]);
    expect(await timestamp()).toBeGreaterThan(before); // devices see their new view at the next check
    expect(rollouts.view(inWave(1)[0]!).annotate["2"]?.rollout).toBe(created.id);
    expect(rollouts.view(inWave(2)[0]!).hideVersions).toEqual(["2"]);

    for (const w of [1, 2]) {
      for (const d of inWave(w)) await report.updated(d);
      clock.now += 11 * min;
      await rollouts.tick(); // succeeded
      clock.now += 30 * min;
      await rollouts.tick(); // advanced or completed
    }
    r = (await rollouts.show(created.id))!;
    expect(r).toMatchObject({ state: "completed", reason: "completed: all 20 devices settled, 20 succeeded, 0 failed (0%)" });
    expect(rollouts.view(inWave(2)[0]!).key).toBe(""); // a completed rollout gates nobody
    expect(counted.filter((k) => k === "device-succeeded")).toHaveLength(20);
    expect(counted).toContain("completed");
  });

  test("a failure over the limit halts the rollout within its first wave, says why, and the next wave never sees the version", async () => {
    const { rollouts, clock, store, report } = await setup(open, 30);
    const created = await rollouts.create({ target: "2", tag: "main", waves: [10, 100], soak: "1m", healthWindow: "1m", maxFailures: 5 });
    const members = await store.rolloutMembers(created.id);
    const first = members.filter((m) => m.wave === 0).map((m) => m.uuid);
    expect(first).toHaveLength(3);
    await report.rolledBack(first[0]!); // the other two are still pending: halted while the wave is in progress
    await rollouts.tick();
    let r = (await rollouts.show(created.id))!;
    expect(r).toMatchObject({ state: "halted", wave: 0, reason: "halted at 33.3% failures (1 of 3 devices in wave 1), over the 5% limit" });
    expect(r.failures).toEqual([expect.objectContaining({ uuid: first[0], status: "failed", reason: 'rolled back at start: service "web" is unhealthy' })]);
    expect(r.events.map((e) => e.kind)).toContain("device-failed");
    // Halted: the wave's devices that have not updated no longer see the version, the failed one neither (it would try again).
    expect(rollouts.view(first[1]!).hideVersions).toEqual(["2"]);
    expect(rollouts.view(first[0]!).hideVersions).toEqual(["2"]);
    for (const d of first.slice(1)) await report.updated(d);
    clock.now += 60 * min;
    await rollouts.tick();
    r = (await rollouts.show(created.id))!;
    expect(r).toMatchObject({ state: "halted", wave: 0 }); // halted stays halted
    const later = members.find((m) => m.wave === 1)!.uuid;
    expect(rollouts.view(later).hideVersions).toEqual(["2"]);

    // An operator accepts the failure: resume counts only new failures, so it advances.
    await expect(rollouts.advance(created.id)).rejects.toThrow(new RolloutStateError(`Cannot advance rollout "${created.id}": it is halted (resume it first)`));
    r = await rollouts.resume(created.id);
    expect(r).toMatchObject({ state: "running", acknowledgedFailures: 1, waveStartedAt: new Date(clock.now).toISOString() });
    expect(r.reason).toBe("resumed by an operator from halted; the 1 failure so far is accepted, new ones count against the limit");
    await rollouts.tick();
    expect((await rollouts.show(created.id))!).toMatchObject({ state: "running", wave: 0 }); // the wave soaks again
    clock.now += 1 * min;
    await rollouts.tick();
    expect((await rollouts.show(created.id))!).toMatchObject({ state: "running", wave: 1 });
    expect(rollouts.view(later).annotate["2"]?.rollout).toBe(created.id);

    // New failures halt it again; the reason counts them apart from the accepted one.
    const wave2 = members.filter((m) => m.wave === 1).map((m) => m.uuid);
    for (const d of wave2.slice(0, 2)) await report.rolledBack(d);
    await rollouts.tick();
    expect((await rollouts.show(created.id))!).toMatchObject({
      state: "halted",
      reason: "halted at 6.7% failures (2 of 30 devices in waves 1-2, not counting the 1 accepted on resume), over the 5% limit",
    });
  });

  test("pending past the timeout fails with reason timeout; a device held by its window does not time out", async () => {
    const { rollouts, clock, store, report } = await setup(open, 2);
    const created = await rollouts.create({ target: "2", tag: "main", waves: [100], pendingTimeout: "1h", maxFailures: 100, window: "Sat 02:00-04:00 Europe/Berlin", maxHold: "1d" });
    const [a, b] = (await store.rolloutMembers(created.id)).map((m) => m.uuid);
    expect(rollouts.view(a!).annotate["2"]).toEqual({ rollout: created.id, window: "Sat 02:00-04:00 Europe/Berlin", maxHold: 86400 });
    const until = new Date(clock.now + 3 * 60 * min).toISOString();
    await report.deferred(b!, until);
    await rollouts.tick();
    let r = (await rollouts.show(created.id))!;
    expect(r.holds).toEqual([expect.objectContaining({ uuid: b, hold: expect.objectContaining({ kind: "window", until }) })]);
    expect(r.events.find((e) => e.kind === "device-deferred")?.reason).toBe(`deferred to the maintenance window until ${until}`);
    clock.now += 61 * min;
    await rollouts.tick();
    r = (await rollouts.show(created.id))!;
    expect(r.failures).toEqual([expect.objectContaining({ uuid: a, reason: "timeout: the update did not complete in time" })]);
    expect(r.counts.find((c) => c.status === "pending")?.devices).toBe(1); // b is held: still pending
    clock.now += 3 * 60 * min;
    await rollouts.tick();
    r = (await rollouts.show(created.id))!;
    expect(r.state).toBe("completed");
    expect(r.counts).toEqual([{ wave: 0, status: "failed", devices: 2 }]);
  });

  test("pause, resume, cancel: operator actions check the state, and a restarted service resumes the same rollout", async () => {
    const { rollouts, clock, store, tuf, report } = await setup(open, 10);
    const created = await rollouts.create({ target: "2", tag: "main", waves: [50, 100], soak: "1m", healthWindow: "1m" });
    await expect(rollouts.create({ target: "2", tag: "main", waves: [100] })).rejects.toThrow(/active rollout/);
    await expect(rollouts.resume(created.id)).rejects.toThrow(RolloutStateError);
    await expect(rollouts.pause("nope")).rejects.toThrow(new RolloutNotFoundError("nope"));
    expect(await rollouts.pause(created.id)).toMatchObject({ state: "paused", reason: "paused by an operator in wave 1" });
    for (const m of await store.rolloutMembers(created.id)) if (m.wave === 0) await report.updated(m.uuid);
    clock.now += 10 * min;
    await rollouts.tick();
    expect(await rollouts.show(created.id)).toMatchObject({ state: "paused", wave: 0 }); // devices settle, the rollout does not move

    // A new service over the same database (a restarted gateway) carries on from the stored state.
    await rollouts.stop();
    const again = new Rollouts({ store, tuf, tickMs: 0, viewPollMs: 0, now: () => clock.now });
    await again.start();
    expect(again.view((await store.rolloutMembers(created.id)).find((m) => m.wave === 1)!.uuid).hideVersions).toEqual(["2"]);
    await again.resume(created.id);
    clock.now += 1 * min;
    await again.tick();
    expect(await again.show(created.id)).toMatchObject({ state: "running", wave: 1 });
    expect(await again.cancel(created.id)).toMatchObject({ state: "cancelled" });
    await expect(again.cancel(created.id)).rejects.toThrow(RolloutStateError);
    // Cancelling stops the rollout where it is: a released member that has not installed yet no longer sees the version.
    const waiting = (await store.rolloutMembers(created.id)).find((m) => m.wave === 1)!.uuid;
    expect(again.view(waiting).hideVersions).toEqual(["2"]);
    await again.stop();
  });

  test("an operator's pause racing the tick's completion: one wins, the other applies after it or is refused, never both on the same revision", async () => {
    const { rollouts, clock, store, report } = await setup(open, 4);
    const created = await rollouts.create({ target: "2", tag: "main", waves: [50, 100], soak: "1m", healthWindow: "1m" });
    for (const m of await store.rolloutMembers(created.id)) if (m.wave === 0) await report.updated(m.uuid);
    clock.now += 2 * min;
    await rollouts.tick(); // healthy since 2 minutes: succeeded, and the soak is over: advances
    const r0 = (await rollouts.show(created.id))!;
    expect(r0.wave).toBe(1);
    for (const m of await store.rolloutMembers(created.id)) if (m.wave === 1) await report.updated(m.uuid);
    clock.now += 2 * min;
    await rollouts.tick(); // wave 2 devices succeed; the next tick would complete it
    const [, paused] = await Promise.all([rollouts.tick(), rollouts.pause(created.id).catch((e: Error) => e)]);
    const r = (await rollouts.show(created.id))!;
    const kinds = r.events.filter((e) => e.deviceUuid === null).map((e) => e.kind);
    if (paused instanceof Error) {
      // The tick completed it first: a completed rollout cannot be paused.
      expect(paused).toBeInstanceOf(RolloutStateError);
      expect(r.state).toBe("completed");
      expect(kinds.filter((k) => k === "paused")).toHaveLength(0);
    } else {
      expect(r.state).toBe("paused");
      expect(kinds.filter((k) => k === "completed")).toHaveLength(0);
      expect(kinds.filter((k) => k === "paused")).toHaveLength(1);
    }
    expect(kinds.filter((k) => k === "wave-advanced")).toHaveLength(1);
    expect(r.revision).toBe(created.revision + 1 + 1); // one advance, then exactly one of pause or complete
  });

  test("show keeps the transitions in sight when device events outnumber them", async () => {
    const { rollouts, clock, store, report } = await setup(open, 60);
    const created = await rollouts.create({ target: "2", tag: "main", waves: [100], healthWindow: "1m", soak: "1m" });
    for (const m of await store.rolloutMembers(created.id)) await report.updated(m.uuid);
    clock.now += 2 * min;
    await rollouts.tick(); // 60 device-succeeded events
    await rollouts.tick(); // completed
    const kinds = (await rollouts.show(created.id))!.events.map((e) => e.kind);
    expect(kinds.filter((k) => k === "device-succeeded")).toHaveLength(50);
    expect(kinds.filter((k) => !k.startsWith("device-"))).toEqual(["completed", "wave-started", "created"]);
  });

  test("show lists at most 100 devices held or waiting, and says of how many, as for failures (rollouts show too)", async () => {
    const { rollouts, clock, store, report } = await setup(open, 101);
    // Version 3 is not published: every member waits for its target.
    const early = await rollouts.create({ target: "3", tag: "main", waves: [100] });
    await rollouts.tick();
    let r = (await rollouts.show(early.id))!;
    expect([r.waiting.length, r.moreWaiting, r.waitingDevices]).toEqual([100, true, 101]);
    expect(renderRollout(r)).toContain("Waiting for their target (100 of 101):");
    await rollouts.cancel(early.id);

    const created = await rollouts.create({ target: "2", tag: "main", waves: [100], window: "Sat 02:00-04:00 Europe/Berlin", maxHold: "1d" });
    const members = (await store.rolloutMembers(created.id)).map((m) => m.uuid);
    const until = new Date(clock.now + 3 * 60 * min).toISOString();
    for (const d of members.slice(0, 100)) await report.deferred(d, until);
    await rollouts.tick();
    r = (await rollouts.show(created.id))!;
    expect([r.holds.length, r.moreHolds, r.moreWaiting, r.heldDevices]).toEqual([100, false, false, 100]);
    expect(renderRollout(r)).toContain("Deferred installs:");
    await report.deferred(members[100]!, until);
    await rollouts.tick();
    r = (await rollouts.show(created.id))!;
    expect([r.holds.length, r.moreHolds, r.heldDevices]).toEqual([100, true, 101]);
    expect(renderRollout(r)).toContain("Deferred installs (100 of 101):");
    // The dashboard's page says the same.
    expect(String(await RolloutPage({ r, csrf: "x", canWrite: false }))).toContain("The first 100 of 101 devices that defer the install.");
    // An older gateway says only that there are more.
    const { heldDevices: _n, ...older } = r;
    expect(renderRollout(older)).toContain("Deferred installs (the first 100; more devices than that):");
  });

  test("with the targets key offline, resume and advance are refused with nothing changed, pause is committed and says the devices are told later; the tick signs it once the key is back", async () => {
    const { rollouts, keysDir, timestamp } = await setup(open, 4);
    const created = await rollouts.create({ target: "2", tag: "main", waves: [50, 100], soak: "1m", healthWindow: "1m" });
    await rename(join(keysDir, "targets.json"), join(dir, `targets-${n}.offline`)); // docs/keys.md, "Targets signed offline"
    const before = await timestamp();
    const paused = await rollouts.pause(created.id);
    expect(paused).toMatchObject({ state: "paused", reason: expect.stringMatching(/^paused by an operator in wave 1; the TUF targets key is offline, so the devices are told once it is back/) });
    expect((await rollouts.show(created.id))!.reason).toBe("paused by an operator in wave 1"); // stored as always: the note is the answer's
    await expect(rollouts.resume(created.id)).rejects.toThrow(TargetsKeyOfflineError);
    await expect(rollouts.advance(created.id)).rejects.toThrow(`Cannot advance rollout "${created.id}": the TUF targets key is offline`);
    await expect(rollouts.create({ target: "1", tag: "main", waves: [100] })).rejects.toThrow(RolloutStateError); // 409
    expect(await rollouts.show(created.id)).toMatchObject({ state: "paused", wave: 0 });
    await rollouts.tick();
    expect(await timestamp()).toBe(before);

    await rename(join(dir, `targets-${n}.offline`), join(keysDir, "targets.json"));
    await rollouts.tick(); // signs what the pause left unsigned
    expect(await timestamp()).toBe(before + 1);
    await rollouts.tick(); // and only once
    expect(await timestamp()).toBe(before + 1);
    expect((await rollouts.resume(created.id)).state).toBe("running");
  });

  test("an advance whose rollout moved on between its read and its write is refused, not taken for the wave after", async () => {
    const { rollouts, store, tuf, clock } = await setup(open, 10);
    const created = await rollouts.create({ target: "2", tag: "main", waves: [10, 50, 100], soak: "30m" });
    // The operator's replica reads the rollout in wave 1; before its write, another advance commits
    // (as the tick's own would; here the same request sent twice, on this replica's store).
    const racing = interposed(store, "getRollout", (id) => rollouts.advance(id));
    const operator = await new Rollouts({ store: racing, tuf, tickMs: 0, viewPollMs: 0, now: () => clock.now }).start();
    try {
      await expect(operator.advance(created.id)).rejects.toThrow(new RolloutStateError(`Cannot advance rollout "${created.id}" from wave 1: it is at wave 2 by now (advanced meanwhile; nothing was done)`));
      expect(await store.getRollout(created.id)).toMatchObject({ wave: 1 });
      expect((await store.listRolloutEvents(created.id, { device: false })).filter((e) => e.kind === "wave-started").map((e) => e.wave)).toEqual([1, 0]);
    } finally {
      await operator.stop();
    }
  });

  test("resume accepts the failures there are when it commits: one recorded between its count and its write is accepted too, and named", async () => {
    const { rollouts, store, tuf, clock, report } = await setup(open, 30);
    const created = await rollouts.create({ target: "2", tag: "main", waves: [10, 100], soak: "1m", healthWindow: "1m", maxFailures: 5 });
    const first = (await store.rolloutMembers(created.id)).filter((m) => m.wave === 0).map((m) => m.uuid);
    await report.rolledBack(first[0]!);
    await rollouts.tick();
    expect(await store.getRollout(created.id)).toMatchObject({ state: "halted", acknowledgedFailures: 0 });
    // The operator's replica counts the failures; before its write, the tick (which judges members
    // while halted, without moving the revision) records another one.
    const racing = interposed(store, "rolloutCounts", async (id) => {
      const r = (await store.getRollout(id))!;
      const at = new Date(clock.now).toISOString();
      await store.updateRolloutDevices(id, [{ uuid: first[1]!, status: "failed", reason: "timeout" }], {
        revision: r.revision,
        events: [{ rolloutId: id, at, kind: "device-failed", wave: 0, deviceUuid: first[1]!, reason: "timeout" }],
      });
    });
    const operator = await new Rollouts({ store: racing, tuf, tickMs: 0, viewPollMs: 0, now: () => clock.now }).start();
    try {
      const r = await operator.resume(created.id);
      expect(r).toMatchObject({ state: "running", acknowledgedFailures: 2, reason: "resumed by an operator from halted; the 2 failures so far are accepted, new ones count against the limit" });
      // Not halted again over a failure from before the resume.
      await rollouts.tick();
      expect(await store.getRollout(created.id)).toMatchObject({ state: "running" });
    } finally {
      await operator.stop();
    }
  });

  test("bad requests are refused with a clear reason", async () => {
    const { rollouts } = await setup(open, 1);
    await expect(rollouts.create({ target: "2", tag: "main", waves: [10, 50] })).rejects.toThrow(/last wave must be 100%/);
    await expect(rollouts.create({ target: "2", tag: "nobody", waves: [100] })).rejects.toThrow('No devices in tag "nobody": nothing to roll out to');
    await expect(rollouts.create({ target: "2", group: "none", waves: [100] })).rejects.toThrow('Unknown group "none"');
    await expect(rollouts.create({ target: "v2", tag: "main", waves: [100] })).rejects.toThrow(/Invalid target "v2"/);
    await expect(rollouts.create({ target: "2", tag: "main", waves: [100], window: "Someday 02:00" })).rejects.toThrow(/Someday/);
  });
}

describe("rollouts on SQLite", () => suite(async () => SqliteStore.open(":memory:")));
describe("rollouts on PostgreSQL", () => {
  let k = 0;
  suite(async () => PostgresStore.connect(await pg.createDatabase(`rollouts_${process.pid}_${k++}`), { max: 4 }));
});

test("the tick goes on when the wall clock steps back (its spacing is timed on the monotonic clock)", async () => {
  const store = SqliteStore.open(":memory:");
  stores.push(store);
  const tuf = await TufRepo.open({ storage: new MemoryTufStorage(), keysDir: join(dir, "keys-step") });
  const rollouts = new Rollouts({ store, tuf, tickMs: 20, viewPollMs: 0 });
  let ticks = 0;
  const tick = rollouts.tick.bind(rollouts);
  rollouts.tick = () => (ticks++, tick());
  await rollouts.start();
  try {
    await Bun.sleep(100);
    expect(ticks).toBeGreaterThan(0);
    setSystemTime(new Date(Date.now() - 3_600_000)); // NTP steps the clock back an hour
    ticks = 0;
    await Bun.sleep(200);
    expect(ticks).toBeGreaterThan(2);
  } finally {
    setSystemTime();
    await rollouts.stop();
  }
});
