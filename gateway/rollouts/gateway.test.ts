/**
 * The rollout engine inside a real gateway process (`gateway serve --rollout-tick 0.2`), fed by
 * simulated devices over mTLS: the tick halts a rollout by itself, /metrics shows it, and a
 * gateway killed with SIGKILL comes back with the same rollout state.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { RolloutDetail } from "../../lib/api/admin.ts";
import type { TargetEntry } from "../../lib/api/target.ts";
import { startGateway, type GatewayHandle } from "../../test/harness/gateway.ts";
import { SimFleet } from "../../test/harness/sim-devices.ts";

let gw: GatewayHandle;

beforeAll(async () => {
  gw = await startGateway({ args: ["--rollout-tick", "0.2"] });
});
afterAll(async () => {
  await gw?.stop();
});

const entry = (version: string): TargetEntry => ({
  length: 0,
  hashes: { sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
  custom: { version, hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { web: { uri: `${gw.host}/main/web@sha256:${version.padStart(64, "0")}` } } },
});

async function admin<T>(path: string, body?: unknown): Promise<T> {
  const res = await gw.adminFetch(path, body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

async function until<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}: last ${JSON.stringify(v).slice(0, 400)}`);
    await Bun.sleep(100);
  }
}

test("a device that rolls back halts the rollout on the gateway's own tick; the other waves never see the version; metrics and a SIGKILL restart keep it", async () => {
  const fleet = await SimFleet.register(gw, { count: 10, initialTarget: "hw-1", pullManifests: false, behaviour: () => "start-fails" });
  await admin("/admin/targets", { targets: { "hw-1": entry("1") } });
  const created = await admin<RolloutDetail>("/admin/rollouts", { target: "2", tag: "main", waves: [10, 100], soak: "1s", healthWindow: "1s", maxFailures: 5 });
  await admin("/admin/targets", { targets: { "hw-2": entry("2") } }); // published after the rollout: the safe order
  expect(created.counts).toEqual([
    { wave: 0, status: "pending", devices: 1 },
    { wave: 1, status: "pending", devices: 9 },
  ]);

  await fleet.cycle(); // the wave-1 device installs 2 and rolls back; the others are not offered 2
  const halted = await until("the halt", () => admin<RolloutDetail>(`/admin/rollouts/${created.id}`), (r) => r.state === "halted");
  expect(halted.reason).toBe("halted at 100% failures (1 of 1 devices in wave 1), over the 5% limit");
  const canary = halted.failures[0]!.uuid;
  await fleet.cycle();
  for (const d of fleet.devices) expect(d.seen.has("hw-2")).toBe(d.uuid === canary);

  const metrics = await (await gw.adminFetch("/metrics")).text();
  expect(metrics).toContain(`rollout_wave{rollout="${created.id}"} 1`);
  expect(metrics).toContain(`rollout_devices{rollout="${created.id}",status="failed"} 1`);
  expect(metrics).toContain(`rollout_devices{rollout="${created.id}",status="pending"} 9`);
  expect(metrics).toContain(`rollout_transitions_total{kind="halted"} 1`);

  await gw.kill();
  gw = await startGateway({ dataDir: gw.dataDir, args: ["--rollout-tick", "0.2"] });
  await Bun.sleep(500); // a few ticks
  const after = await admin<RolloutDetail>(`/admin/rollouts/${created.id}`);
  expect(after).toMatchObject({ state: "halted", wave: 0, reason: halted.reason, waveStartedAt: halted.waveStartedAt });
  await fleet.cycle();
  for (const d of fleet.devices) expect(d.seen.has("hw-2")).toBe(d.uuid === canary);
}, 120_000);
