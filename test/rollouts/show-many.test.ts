/**
 * `gateway rollouts show` of a rollout with more failures than the gateway lists (100): the text
 * says how many of them it shows, so an operator does not take the list for all of them. A real
 * gateway and 105 simulated devices that each roll the version back.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { RolloutDetail } from "../../lib/api/admin.ts";
import { adminJson, targetEntry } from "./_fixtures.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { SimFleet } from "../harness/sim-devices.ts";
import { waitFor } from "../harness/tmp.ts";

const MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
let gw: GatewayHandle;

beforeAll(async () => {
  gw = await startGateway({ args: ["--rollout-tick", "0.2"] });
});
afterAll(async () => {
  await gw?.stop();
});

test("show says \"Failures (100 of 105)\" when the gateway lists only some of the failed devices", async () => {
  const fleet = await SimFleet.register(gw, { count: 105, initialTarget: "hw-1", pullManifests: false, concurrency: 24, behaviour: () => "start-fails" });
  await adminJson(gw, "/admin/targets", { targets: { "hw-1": targetEntry("1", gw.host) } });
  const r = await adminJson<RolloutDetail>(gw, "/admin/rollouts", { target: "2", tag: "main", waves: [100], maxFailures: 100 });
  await adminJson(gw, "/admin/targets", { targets: { "hw-2": targetEntry("2", gw.host) } });
  await fleet.cycle();
  const failed = async () => (await adminJson<RolloutDetail>(gw, `/admin/rollouts/${r.id}`)).counts.find((c) => c.status === "failed")?.devices;
  await waitFor({ service: "gateway", what: "all 105 devices failed", ready: async () => (await failed()) === 105, logFile: gw.logFile, timeoutMs: 20_000 });

  const show = Bun.spawnSync([process.execPath, MAIN, "rollouts", "show", r.id, "--data", gw.dataDir], { stdout: "pipe", stderr: "pipe" });
  expect(show.exitCode).toBe(0);
  const out = show.stdout.toString();
  expect(out).toContain("\nFailures (100 of 105):\n");
  expect(out.split("\n").filter((l) => l.includes("rolled back at start"))).toHaveLength(100 + 50); // the failures, and the latest 50 device events
}, 120_000);
