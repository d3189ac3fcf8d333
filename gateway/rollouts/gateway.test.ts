/**
 * The rollout engine inside a real gateway process (`gateway serve --rollout-tick 0.2`), fed by
 * simulated devices over mTLS: the tick halts a rollout by itself, /metrics shows it, and a
 * gateway killed with SIGKILL comes back with the same rollout state.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { RolloutDetail } from "../../lib/api/admin.ts";
import { startGateway, type GatewayHandle } from "../../test/harness/gateway.ts";
import { SimFleet } from "../../test/harness/sim-devices.ts";
import { waitFor } from "../../test/harness/tmp.ts";
import { adminJson, targetEntry } from "../../test/rollouts/_fixtures.ts";

let gw: GatewayHandle;

beforeAll(async () => {
  gw = await startGateway({ args: ["--rollout-tick", "0.2"] });
});
afterAll(async () => {
  await gw?.stop();
});

test("a device that rolls back halts the rollout on the gateway's own tick; the other waves never see the version; metrics and a SIGKILL restart keep it", async () => {
  const fleet = await SimFleet.register(gw, { count: 10, initialTarget: "hw-1", pullManifests: false, behaviour: () => "start-fails" });
  await adminJson(gw, "/admin/targets", { targets: { "hw-1": targetEntry("1", gw.host) } });
  const created = await adminJson<RolloutDetail>(gw, "/admin/rollouts", { target: "2", tag: "main", waves: [10, 100], soak: "1s", healthWindow: "1s", maxFailures: 5 });
  await adminJson(gw, "/admin/targets", { targets: { "hw-2": targetEntry("2", gw.host) } }); // published after the rollout: the safe order
  expect(created.counts).toEqual([
    { wave: 0, status: "pending", devices: 1 },
    { wave: 1, status: "pending", devices: 9 },
  ]);

  await fleet.cycle(); // the wave-1 device installs 2 and rolls back; the others are not offered 2
  const show = () => adminJson<RolloutDetail>(gw, `/admin/rollouts/${created.id}`);
  await waitFor({ service: "gateway", what: "the rollout halted by its tick", ready: async () => (await show()).state === "halted", logFile: gw.logFile, timeoutMs: 10_000 });
  const halted = await show();
  expect(halted.reason).toBe("halted at 100% failures (1 of 1 devices in wave 1), over the 5% limit");
  const canary = halted.failures[0]!.uuid;
  await fleet.cycle();
  for (const d of fleet.devices) expect(d.seen.has("hw-2")).toBe(d.uuid === canary);

  const metrics = await (await gw.adminFetch("/metrics")).text();
  expect(metrics).toContain(`gateway_rollout_wave{rollout="${created.id}"} 1`);
  expect(metrics).toContain(`gateway_rollout_devices{rollout="${created.id}",status="failed"} 1`);
  expect(metrics).toContain(`gateway_rollout_devices{rollout="${created.id}",status="pending"} 9`);
  expect(metrics).toContain(`gateway_rollout_transitions_total{kind="halted"} 1`);
  // Every metric a running gateway shows is named gateway_* (the rollout ones were not until 2026-12-06).
  const names = new Set(metrics.split("\n").flatMap((l) => (l && !l.startsWith("#") ? [/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)![0]] : [])));
  expect(names).toContain("gateway_connections_open");
  expect([...names].filter((n) => !n.startsWith("gateway_"))).toEqual([]);

  await gw.kill();
  gw = await startGateway({ dataDir: gw.dataDir, args: ["--rollout-tick", "0.2"] });
  await Bun.sleep(500); // a few ticks
  const after = await adminJson<RolloutDetail>(gw, `/admin/rollouts/${created.id}`);
  expect(after).toMatchObject({ state: "halted", wave: 0, reason: halted.reason, waveStartedAt: halted.waveStartedAt });
  await fleet.cycle();
  for (const d of fleet.devices) expect(d.seen.has("hw-2")).toBe(d.uuid === canary);
}, 120_000);
