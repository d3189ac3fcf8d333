/**
 * A rollout survives the gateway being SIGKILLed in every wave: simulated devices (own
 * certificates, TUF verified with lib/tuf, real events and apps-states; test/harness/sim-devices.ts)
 * follow a rollout in waves 10%, 50%, 100%; in each wave, with part of it installed, the
 * gateway is killed and restarted on the same data dir and database. After each restart the
 * rollout shows the same state, wave, wave start and counts, no device outside the released
 * waves is ever offered the target, and in the end it completes with every device succeeded.
 * Default (npm test): 40 devices; RELIABILITY_FULL=1: 1,000 (RELIABILITY_ROLLOUT_DEVICES
 * overrides). The gateway runs on SQLite, or on PostgreSQL with OTA_TEST_DB=postgres.
 */
import { afterAll, expect, test } from "bun:test";
import type { RolloutDetail } from "../../lib/api/admin.ts";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { startGateway, testDbKind, type GatewayHandle } from "../harness/gateway.ts";
import { SimFleet } from "../harness/sim-devices.ts";
import { until } from "../harness/tmp.ts";
import { expectedWaves, ROLLOUT_TICK_S, statusCounts } from "../rollouts/_fleet.ts";
import { FULL, Tally } from "./_tally.ts";

const tally = new Tally("rollout-kills");
afterAll(() => tally.print());

const devices = Number(process.env.RELIABILITY_ROLLOUT_DEVICES ?? (FULL ? 1000 : 40));
const WAVES = [10, 50, 100];
/**
 * npm test: a rollout check every 0.25 s (ROLLOUT_TICK_S, test/rollouts' tick), well under the
 * 1 s soak and health window, so a wave moves on soon after its time is up; and a 2 s signer lease
 * instead of the default 6, which the restarted gateway must wait out (the killed one's) before it
 * moves the rollout on. With RELIABILITY_FULL=1 (1,000 devices, where a tick costs more) a 1 s
 * tick and the default lease.
 */
const ARGS = ["--polling-seconds", "1", ...(FULL ? ["--rollout-tick", "1"] : ["--rollout-tick", ROLLOUT_TICK_S, "--signer-lease", "2"])];

test(`a rollout to ${devices} devices, the gateway SIGKILLed in every wave: same state after each restart, then it completes`, async () => {
  let gw: GatewayHandle = await startGateway({ args: ARGS });
  try {
    const admin = async <T>(path: string, body?: unknown): Promise<T> => {
      const res = await gw.adminFetch(path, body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as T;
    };
    const entry = (version: string) => ({
      length: 0,
      hashes: { sha256: EMPTY_SHA256 },
      custom: { version, hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { shop: { uri: `${gw.host}/main/shop@sha256:${version.repeat(64)}` } } },
    });
    await admin("/admin/targets", { targets: { "amd64-linux-1": entry("1") } });
    const fleet = await SimFleet.register(gw, { count: devices, initialTarget: "amd64-linux-1", pullManifests: false, concurrency: FULL ? 32 : 16 });
    const exp = expectedWaves(fleet.devices.map((d) => d.uuid), WAVES);
    const created = await admin<RolloutDetail>("/admin/rollouts", { target: "2", tag: "main", waves: WAVES, soak: 1, healthWindow: 1 });
    await admin("/admin/targets", { targets: { "amd64-linux-2": entry("2") } });

    const kills: string[] = [];
    let detail = created;
    let killedInWave = -1;
    const deadline = Date.now() + (FULL ? 600_000 : 120_000);
    while (detail.state !== "completed") {
      if (Date.now() > deadline) throw new Error(`stuck: ${JSON.stringify(detail.counts)}`);
      expect(detail.state).toBe("running");
      const wave = detail.wave;
      const members = fleet.devices.filter((d) => exp.get(d.uuid)! <= wave);
      if (killedInWave < wave && members.some((d) => d.current !== "amd64-linux-2")) {
        // Half of what is left of this wave installs, then the kill, with the tick running.
        const left = members.filter((d) => d.current !== "amd64-linux-2");
        await fleet.cycle(left.slice(0, Math.ceil(left.length / 2)));
        // Quiet first: every device that installed has passed its health window; the rest stay pending.
        const installed = fleet.devices.filter((d) => d.current === "amd64-linux-2").length;
        const show = () => admin<RolloutDetail>(`/admin/rollouts/${created.id}`);
        await until(`the rollout quiet: all ${installed} installed devices succeeded`, async () => statusCounts(await show()), (c) => c.succeeded === installed, 30_000, 300);
        const before = await show();
        await gw.kill();
        gw = await startGateway({ dataDir: gw.dataDir, args: ARGS });
        const after = await admin<RolloutDetail>(`/admin/rollouts/${created.id}`);
        const same = (["state", "wave", "waveStartedAt", "counts"] as const).every((k) => JSON.stringify(after[k]) === JSON.stringify(before[k]));
        kills.push(`wave ${before.wave + 1}: ${JSON.stringify(statusCounts(before))}${same ? "" : ` -> ${JSON.stringify(statusCounts(after))} (${after.state}, wave ${after.wave + 1})`}`);
        expect(after.state).toBe(before.state);
        expect(after.wave).toBe(before.wave);
        expect(after.waveStartedAt).toBe(before.waveStartedAt);
        expect(after.counts).toEqual(before.counts);
        killedInWave = wave;
      }
      // The next wave's devices check without installing (the tick may release their wave at any
      // moment): what they are offered is checked below, and the whole wave is still left to
      // install, half of it before the next kill.
      await fleet.each((d) => d.check(), fleet.devices.filter((d) => exp.get(d.uuid) === wave + 1));
      await fleet.cycle(fleet.devices.filter((d) => exp.get(d.uuid) !== wave + 1));
      detail = await admin<RolloutDetail>(`/admin/rollouts/${created.id}`);
      const released = detail.state === "completed" ? WAVES.length - 1 : detail.wave;
      for (const d of fleet.devices) {
        const offered = Object.values(d.lastTargets?.targets ?? {}).some((e) => e.custom.version === "2");
        if (offered) expect(exp.get(d.uuid)!, `${d.name} was offered version 2 before its wave`).toBeLessThanOrEqual(released);
      }
      await Bun.sleep(300);
    }
    expect(statusCounts(detail)).toEqual({ succeeded: devices });
    expect(kills.length).toBe(WAVES.length);
    tally.record(`${devices} devices, waves ${WAVES.join("%,")}%, SIGKILL in each wave`, "survived", `same state after every restart (${kills.join("; ")}); completed, ${devices} succeeded`, {
      devices,
      kills: kills.length,
      db: testDbKind(),
    });
  } catch (err) {
    tally.record(`${devices} devices, waves ${WAVES.join("%,")}%, SIGKILL in each wave`, "failed", (err as Error).message);
    throw err;
  } finally {
    await gw.stop();
  }
}, (FULL ? 15 : 4) * 60_000);
