/**
 * Rollouts end to end over real TLS, on SQLite (npm test) and on PostgreSQL (OTA_TEST_DB=postgres,
 * as `npm run reliability` runs it): 200 simulated devices (own
 * certificates, TUF verified with lib/tuf, real events and apps-states) and 2 real fioup
 * devices on the private dockerd, against `gateway serve` with a 0.25 s rollout tick.
 *
 * 1. Version 2 in waves 1%, 10%, 100% advances wave by wave; at every moment the signed
 *    metadata a device verifies offers version 2 only if its wave is released (computed here
 *    from the documented order: `first`, then sha256 of the uuid), and a real fioup outside
 *    the released waves refuses `fioup update 2`.
 * 2. Version 3, whose app fails its healthcheck, halts in its first wave (both real devices
 *    roll back, a simulated one reports its app unhealthy); no other device is ever offered
 *    it and the gateway's registry served none of them a manifest.
 * 3. Version 4 to a dynamic group: SIGKILL of the gateway in the middle of wave 2; after the
 *    restart the rollout is in the same state (wave, counts, wave start), then completes.
 * 4. Version 5 to the real devices with a maintenance window and a max hold: one device's
 *    window is closed (its hold clock, FIOUP_TEST_NOW_FILE), the other holds `fioup lock`;
 *    both download, neither installs, and `gateway rollouts show` reports each hold and until
 *    when; the max hold passes and the window opens: both install, nothing fetched again.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import type { RolloutDetail } from "../../lib/api/admin.ts";
import { servedBytes, testDbKind } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import type { SimDevice } from "../harness/sim-devices.ts";
import { tempDir, until } from "../harness/tmp.ts";
import { httpGet, ROOT } from "../fioup/_setup.ts";
import { expectedWaves, type RealDevice, HEALTH_WINDOW_S, manifestBytesByDevice, RolloutFleet, SOAK_S, statusCounts, TAG, transitionCounts, type DbKind } from "./_fleet.ts";

const WAVES = [1, 10, 100];
const name = (v: string) => `amd64-linux-${v}`;
/** Whether the device's last verified targets offer version `v`. */
const offers = (d: SimDevice, v: string) => Object.values(d.lastTargets?.targets ?? {}).some((e) => e.custom.version === v);
const sorted = (xs: Iterable<string>) => [...xs].sort();

/**
 * The harness's store: SQLite in npm test (two minutes on both stores would be a tenth of the suite;
 * the store contract and the engine's own tests run on both there), PostgreSQL in the reliability
 * suite's second run (OTA_TEST_DB=postgres).
 */
const KINDS: DbKind[] = [testDbKind()];

for (const kind of KINDS) {
  describe(`rollouts on ${kind}`, () => {
    let pg: PostgresHandle | undefined;
    let fleet: RolloutFleet;

    beforeAll(async () => {
      if (kind === "postgres") pg = await startPostgres();
      fleet = await RolloutFleet.start(kind, pg);
    }, 240_000);

    afterAll(async () => {
      const transient = fleet?.sims.transientErrors() ?? [];
      if (transient.length) console.warn(`${transient.length} check-in(s) failed once and passed when tried again:\n${transient.slice(0, 5).join("\n")}`);
      await fleet?.stop();
      await pg?.stop();
    }, 120_000);

    test("waves 1%, 10%, 100% advance one by one; devices outside the released waves are not offered the target, and fioup refuses it", async () => {
      const [a, b] = fleet.real;
      const sims = fleet.sims.devices;
      // A real device and two simulated ones go first: wave 1 is exactly them, so B is outside it.
      const first = [a.uuid, sims[0]!.uuid, sims[1]!.uuid];
      const exp = expectedWaves(fleet.uuids, WAVES, first);
      expect(exp.get(b.uuid)).toBeGreaterThan(0);
      const countedBefore = await transitionCounts(fleet.gw);
      // Safe order: the rollout first, then the version is published.
      const created = await fleet.createRollout({ target: "2", tag: TAG, waves: WAVES, soak: SOAK_S, healthWindow: HEALTH_WINDOW_S, first });
      expect(created.state).toBe("running");
      expect(created.wave).toBe(0);
      expect(statusCounts(created).pending).toBe(202);
      await fleet.publish("2");

      /** The waves the rollout was seen at, in order: read before each round and right after its simulated devices checked in. */
      const seenWaves: number[] = [];
      const noteWave = (w: number) => {
        if (seenWaves.at(-1) !== w) seenWaves.push(w);
      };
      let bUpdated = false;
      const refusals: number[] = [];
      /** The wave the rollout was at (before the round) when each simulated device was first offered version 2. */
      const firstOffered = new Map<string, number>();
      const deadline = Date.now() + 150_000;
      for (let round = 0; ; round++) {
        const before = await fleet.show(created.id);
        if (before.state === "completed") break;
        expect(before.state, `${before.reason}`).toBe("running");
        noteWave(before.wave);
        if (Date.now() > deadline) throw new Error(`rollout stuck at wave ${before.wave}: ${JSON.stringify(before.counts)}`);
        const bStep = async () => {
          if (bUpdated) return;
          // B's verified metadata offers version 2 only once its wave is released; asked by name before
          // that, fioup refuses it. (Each answer is compared with the rollout read right after it.)
          const released = (d: RolloutDetail) => (d.state === "completed" ? WAVES.length - 1 : d.wave);
          const check = await b.device.fioup("check");
          const atCheck = await fleet.show(created.id);
          if (check.code === 0) {
            expect(check.json.update?.version).toBe("2");
            expect(released(atCheck), "B was offered version 2 before its wave").toBeGreaterThanOrEqual(exp.get(b.uuid)!);
            const r = await b.device.fioup("update");
            expect(r.code, r.stderr).toBe(0);
            bUpdated = true;
            return;
          }
          expect(check.code, check.stderr).toBe(3); // nothing newer
          const forced = await b.device.fioup("update", "2");
          if (forced.code === 0) {
            // Its wave was released between the check and this update.
            expect(released(await fleet.show(created.id))).toBeGreaterThanOrEqual(exp.get(b.uuid)!);
            bUpdated = true;
            return;
          }
          expect(forced.stderr).toMatch(/Cannot select version 2/);
          expect((await b.device.fioup("status")).json.current.name).toBe(name("1"));
          refusals.push(before.wave);
        };
        // B first: in round 1 wave 1 cannot end before A (one of its devices) has updated.
        const real = (async () => {
          await bStep();
          if (round === 0) {
            const r = await a.device.fioup("update");
            expect(r.code, r.stderr).toBe(0);
          }
        })();
        // The rollout as it is right after the simulated devices checked in (not after the slower real ones).
        const [after] = await Promise.all([fleet.sims.cycle().then(() => fleet.show(created.id)), real]);
        const releasedUpTo = after.state === "completed" ? WAVES.length - 1 : after.wave;
        // With a 0.25 s tick a wave can be released and done within one round (all its devices in
        // one cycle, then its 1 s health window): read here it is seen, as a wave cannot end
        // within 1 s of its last install.
        noteWave(releasedUpTo);
        for (const d of sims) {
          if (!offers(d, "2")) continue;
          // Never before its wave; and first offered in its own wave, not later: a wave advances only once all of it succeeded.
          expect(exp.get(d.uuid)!, `${d.name} was offered version 2 before its wave`).toBeLessThanOrEqual(releasedUpTo);
          if (!firstOffered.has(d.uuid)) {
            firstOffered.set(d.uuid, before.wave);
            expect(exp.get(d.uuid)!, `${d.name} was first offered version 2 after its wave`).toBeGreaterThanOrEqual(before.wave);
          }
        }
        await Bun.sleep(300);
      }
      expect(seenWaves).toEqual([0, 1, 2]);
      expect(sims.every((d) => d.current === name("2"))).toBe(true);
      expect(bUpdated).toBe(true);
      // Refused at least while wave 1 (only the `first` devices) ran.
      expect(refusals).toContain(0);
      for (const r of fleet.real) expect(await httpGet(r.port)).toBe("hello v2");
      const done = await fleet.show(created.id);
      expect(statusCounts(done)).toEqual({ succeeded: 202 });
      // The engine's waves hold exactly as many devices as the documented order gives.
      for (const [k] of WAVES.entries()) {
        const engine = done.counts.filter((c) => c.wave === k).reduce((n, c) => n + c.devices, 0);
        expect(engine).toBe([...exp.values()].filter((w) => w === k).length);
      }
      // Every transition is an event with its reason (a show lists the latest 50: those seen, in order), and on /metrics.
      const kinds = fleet.eventKinds(created.id).filter((k) => !k.startsWith("device-"));
      expect(kinds[0]).toBe("created");
      expect(kinds).toContain("wave-advanced");
      expect(kinds.at(-1)).toBe("completed");
      expect([...fleet.events.values()].every((e) => e.reason.length > 0)).toBe(true);
      const counted = await transitionCounts(fleet.gw);
      expect((counted["wave-advanced"] ?? 0) - (countedBefore["wave-advanced"] ?? 0)).toBe(2);
      expect((counted.completed ?? 0) - (countedBefore.completed ?? 0)).toBe(1);
      expect((counted["device-succeeded"] ?? 0) - (countedBefore["device-succeeded"] ?? 0)).toBe(202);
    }, 240_000);

    test("a target whose app fails its healthcheck halts the rollout within its first wave; no device outside it ever fetches it", async () => {
      const [a, b] = fleet.real;
      const sims = fleet.sims.devices;
      const manifestsBefore = await manifestBytesByDevice(fleet.gw);
      fleet.simOutcome.set("3", "unhealthy");
      const first = [a.uuid, b.uuid];
      const exp = expectedWaves(fleet.uuids, WAVES, first);
      const wave0 = fleet.uuids.filter((u) => exp.get(u) === 0);
      expect(wave0.length).toBe(3);
      const created = await fleet.createRollout({ target: "3", tag: TAG, waves: WAVES, soak: SOAK_S, healthWindow: HEALTH_WINDOW_S, first });
      await fleet.publish("3", { imageVersion: "2", failingHealthcheck: true });

      // Both real devices try it: the healthcheck fails after start and fioup rolls back. The first
      // failure halts the rollout at the next 0.25 s tick, and a halt hides the version from members
      // that have not fetched it yet, so all three members of wave 0 must have it first: the
      // simulated one (which fails within milliseconds) checks in, alone, once both real ones are
      // pulling the version's app manifests; the real ones fail seconds later, after their healthcheck.
      let settled = false;
      const updates = Promise.all([a.device.fioup("update"), b.device.fioup("update")]).finally(() => (settled = true));
      const pulling = async () => {
        if (settled) return { settled, manifestBytes: [] as number[] };
        const m = await manifestBytesByDevice(fleet.gw);
        return { settled, manifestBytes: [a, b].map((r) => (m.get(r.uuid) ?? 0) - (manifestsBefore.get(r.uuid) ?? 0)) };
      };
      await until("both real devices pulling version 3's app manifests (or their updates ended)", pulling, (v) => v.settled || v.manifestBytes.every((n) => n > 0), 60_000, 100);
      await fleet.sims.cycle(sims.filter((d) => exp.get(d.uuid) === 0));
      const [ra, rb] = await updates;
      for (const r of [ra!, rb!]) {
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(/unhealthy|healthcheck/);
      }
      let detail: RolloutDetail = await fleet.show(created.id);
      const deadline = Date.now() + 60_000;
      while ((detail.state !== "halted" || detail.failures.length < 3) && Date.now() < deadline) {
        await fleet.sims.cycle();
        await Bun.sleep(200);
        detail = await fleet.show(created.id);
      }
      expect(detail.state).toBe("halted");
      expect(detail.wave).toBe(0);
      expect(detail.reason).toMatch(/fail/);
      expect(sorted(detail.failures.map((f) => f.uuid))).toEqual(sorted(wave0));
      expect(detail.events.map((e) => e.kind)).toContain("halted");
      // A few more check-ins of everyone after the halt: still nobody else is offered it.
      await fleet.sims.cycle();
      for (const d of sims) expect(d.seen.has(name("3")), d.name).toBe(exp.get(d.uuid) === 0);
      const manifestsAfter = await manifestBytesByDevice(fleet.gw);
      for (const u of fleet.uuids) {
        if (exp.get(u) === 0) expect(manifestsAfter.get(u) ?? 0, `wave 1 device ${u} pulled the apps`).toBeGreaterThan(manifestsBefore.get(u) ?? 0);
        else expect(manifestsAfter.get(u) ?? 0, `device ${u} outside wave 1 pulled a manifest`).toBe(manifestsBefore.get(u) ?? 0);
      }
      // The real devices run version 2 again; fioup's own check no longer offers 3 (marked bad, and gated for others).
      for (const r of fleet.real) {
        expect((await r.device.fioup("status")).json.current.name).toBe(name("2"));
        expect(await httpGet(r.port)).toBe("hello v2");
      }
    }, 180_000);

    test("SIGKILL of the gateway mid-rollout: after the restart the rollout is in the same state, then it completes", async () => {
      const sims = fleet.sims.devices;
      const group = `sims-${kind}`;
      await fleet.t.admin("/admin/groups", { method: "POST", body: JSON.stringify({ name: group, query: "name~sim-" }) });
      const exp = expectedWaves(sims.map((d) => d.uuid), WAVES);
      const created = await fleet.createRollout({ target: "4", group, waves: WAVES, soak: SOAK_S, healthWindow: HEALTH_WINDOW_S });
      expect(statusCounts(created).pending).toBe(200);
      await fleet.publish("4");
      // Waves 1 and 2 released; half of wave 2 installs, the other half has not checked in yet.
      const wave2 = sims.filter((d) => exp.get(d.uuid) === 1);
      const notYet = new Set(wave2.slice(0, Math.floor(wave2.length / 2)));
      let detail = await fleet.show(created.id);
      const deadline = Date.now() + 60_000;
      while (detail.wave < 1 && Date.now() < deadline) {
        await fleet.sims.cycle(sims.filter((d) => !notYet.has(d)));
        await Bun.sleep(300);
        detail = await fleet.show(created.id);
      }
      expect(detail.wave).toBe(1);
      await fleet.sims.cycle(sims.filter((d) => !notYet.has(d)));
      // Quiet: every device that installed has passed its health window (succeeded); the rest stay pending.
      const installed = sims.filter((d) => d.current === name("4")).length;
      await until(`the rollout quiet: all ${installed} installed devices succeeded`, async () => statusCounts(await fleet.show(created.id)), (c) => c.succeeded === installed, 30_000, 300);
      const beforeKill = await fleet.show(created.id);
      expect(beforeKill.state).toBe("running");
      expect(beforeKill.wave).toBe(1);
      expect(statusCounts(beforeKill).pending).toBe(notYet.size + sims.filter((d) => exp.get(d.uuid) === 2).length);

      await fleet.killAndRestart();
      const afterRestart = await fleet.show(created.id);
      for (const k of ["state", "wave", "waveStartedAt", "counts"] as const) expect(afterRestart[k]).toEqual(beforeKill[k]);
      // Still gated after the restart: wave 3 devices are not offered version 4.
      await fleet.sims.cycle(sims.filter((d) => exp.get(d.uuid) === 2).slice(0, 20));
      for (const d of sims) if (exp.get(d.uuid) === 2) expect(offers(d, "4"), d.name).toBe(false);

      // Everyone checks in again: it continues and completes.
      const end = Date.now() + 90_000;
      while (detail.state !== "completed" && Date.now() < end) {
        await fleet.sims.cycle();
        await Bun.sleep(300);
        detail = await fleet.show(created.id);
        expect(detail.state).not.toBe("halted");
      }
      expect(detail.state).toBe("completed");
      expect(statusCounts(detail)).toEqual({ succeeded: 200 });
      expect(sims.every((d) => d.current === name("4"))).toBe(true);
    }, 240_000);

    test("a maintenance window defers the install but not the download, an update lock until the max hold; rollouts show reports both", async () => {
      const [a, b] = fleet.real;
      // Version 4's rollout completed: it gates nobody, so the real devices (not in its group) take it now.
      const upd = await Promise.all(fleet.real.map((r) => r.device.fioup("update")));
      for (const r of upd) expect(r.code, r.stderr).toBe(0);
      // fioup's hold clocks (FIOUP_TEST_NOW_FILE): A's is a Tuesday noon, outside the window; B's is inside it.
      const clocks = await tempDir("rollout-clock-");
      const clockOf = (r: RealDevice, iso: string) => writeFileSync(`${clocks}/${r.app}`, iso);
      for (const r of fleet.real) {
        const env = r.device.env.bind(r.device);
        r.device.env = () => ({ ...env(), FIOUP_TEST_NOW_FILE: `${clocks}/${r.app}` });
      }
      clockOf(a, "2026-12-01T12:00:00Z");
      clockOf(b, "2026-12-05T03:00:00Z");
      const group = `real-${kind}`;
      await fleet.t.admin("/admin/groups", { method: "POST", body: JSON.stringify({ name: group, devices: [a.uuid, b.uuid] }) });
      const created = await fleet.createRollout({ target: "5", group, waves: [100], soak: SOAK_S, healthWindow: HEALTH_WINDOW_S, window: "Sat 02:00-04:00 UTC", maxHold: 4 });
      expect(created.installWindow).toBe("Sat 02:00-04:00 UTC");
      await fleet.publish("5");
      const blobsBefore = await servedBytes(fleet.gw, `device:${a.uuid}`);

      expect((await b.device.fioup("lock", "--reason", "busy")).code).toBe(0);
      const [deferredA, deferredB] = await Promise.all([a.device.fioup("update"), b.device.fioup("update")]);
      expect(deferredA!.code, deferredA!.stderr).toBe(14);
      expect(deferredB!.code, deferredB!.stderr).toBe(14);
      // Downloaded already (the gateway's own count), installed not.
      const blobsFetched = await servedBytes(fleet.gw, `device:${a.uuid}`);
      expect(blobsFetched.blob).toBeGreaterThan(blobsBefore.blob);
      expect(await httpGet(a.port)).toBe("hello v4");

      // What the operator sees: `gateway rollouts show`.
      const cli = (...args: string[]) => Bun.spawnSync([process.execPath, `${ROOT}/gateway/main.ts`, ...args, "--data", fleet.gw.dataDir, "--format", "json"], { stdout: "pipe", stderr: "pipe" });
      const show = () => {
        const r = cli("rollouts", "show", created.id);
        expect(r.exitCode, r.stderr.toString()).toBe(0);
        return JSON.parse(r.stdout.toString()) as RolloutDetail;
      };
      const shown = await until("both real devices' holds in `gateway rollouts show`", show, (d) => d.holds.length === 2, 20_000, 200);
      const hold = (uuid: string) => shown.holds.find((h) => h.uuid === uuid)?.hold;
      expect(hold(a.uuid)?.kind).toBe("window");
      expect(Date.parse(hold(a.uuid)!.until!)).toBe(Date.parse("2026-12-05T02:00:00Z"));
      expect(hold(b.uuid)?.kind).toBe("lock");
      expect(Date.parse(hold(b.uuid)!.until!)).toBe(Date.parse("2026-12-05T03:00:04Z")); // first deferral + max hold
      expect(shown.events.some((e) => e.kind === "device-deferred")).toBe(true);
      expect(statusCounts(shown)).toEqual({ pending: 2 });

      // The max hold passes on B's clock with its lock still held: its update proceeds. A's window opens: it
      // installs, fetching nothing more.
      clockOf(b, "2026-12-05T03:00:10Z");
      clockOf(a, "2026-12-05T03:00:00Z");
      const [doneA, doneB] = await Promise.all([a.device.fioup("update"), b.device.fioup("update")]);
      expect(doneA!.code, doneA!.stderr).toBe(0);
      expect(doneB!.code, doneB!.stderr).toBe(0);
      expect((await servedBytes(fleet.gw, `device:${a.uuid}`)).blob).toBe(blobsFetched.blob);
      for (const r of fleet.real) expect(await httpGet(r.port)).toBe("hello v5");
      const detail = await until("version 5's rollout completed", () => fleet.show(created.id), (d) => d.state === "completed", 30_000, 100);
      expect(detail.state).toBe("completed");
      expect(detail.holds).toEqual([]);
      expect((await b.device.fioup("unlock")).code).toBe(0);
    }, 180_000);
  });
}
