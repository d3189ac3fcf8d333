/**
 * Rollouts while the TUF targets key is offline (moved out of DIR/tuf/keys/, docs/keys.md,
 * "Targets signed offline"): what shows the version to more devices (create, advance, the tick's
 * advance) is refused or waits before anything is committed; what withholds it (cancel, the
 * tick's halt) is committed, says the devices are told once the key is back, and they are, within
 * seconds of its return and without a publish. A real gateway (`gateway serve`, fast tick),
 * simulated devices verifying their TUF metadata over mTLS, and the CLI as an operator runs it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import type { RolloutDetail } from "../../lib/api/admin.ts";
import { adminJson, targetEntry } from "./_fixtures.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { SimFleet, type SimDevice, type SimOutcome } from "../harness/sim-devices.ts";
import { until } from "../harness/tmp.ts";
import { gatewayRun } from "../harness/cli.ts";

let gw: GatewayHandle;
let fleet: SimFleet;
/** What a simulated device does with each version (default healthy). */
const outcome = new Map<string, SimOutcome>();

const cli = (...args: string[]) => gatewayRun(["rollouts", ...args, "--data", gw.dataDir]);
const created = (...args: string[]): RolloutDetail => {
  const r = cli("create", "--tag", "main", "--health-window", "1s", ...args, "--format", "json");
  if (r.code !== 0) throw new Error(`rollouts create exited ${r.code}: ${r.err}`);
  return JSON.parse(r.out) as RolloutDetail;
};
const show = (id: string) => adminJson<RolloutDetail>(gw, `/admin/rollouts/${id}`);
const publish = (version: string) => adminJson(gw, "/admin/targets", { targets: { [`hw-${version}`]: targetEntry(version, gw.host) } });

const keyFile = () => join(gw.dataDir, "tuf", "keys", "targets.json");
const aside = () => join(gw.dataDir, "targets.json.offline");
/** docs/keys.md: the targets key file moved out of the keys dir, and back. */
const keyOut = () => renameSync(keyFile(), aside());
const keyBack = () => renameSync(aside(), keyFile());

/** Every device checks (refreshes and verifies its metadata, installs nothing); the devices whose verified targets offer `version`. */
async function offered(version: string): Promise<SimDevice[]> {
  await fleet.each((d) => d.check());
  return fleet.devices.filter((d) => d.lastTargets?.targets[`hw-${version}`] !== undefined);
}

const names = (devices: SimDevice[]) => devices.map((d) => d.name);

beforeAll(async () => {
  gw = await startGateway({ args: ["--rollout-tick", "0.2"] });
  fleet = await SimFleet.register(gw, { count: 10, initialTarget: "hw-1", pullManifests: false, behaviour: (_d, t) => outcome.get(t.entry.custom.version) ?? "healthy" });
  await publish("1");
}, 120_000);
afterAll(async () => {
  if (gw && existsSync(aside())) keyBack();
  await gw?.stop();
});

test("create is refused with 409 while the targets key is offline, saying to put it back, and nothing is created", async () => {
  await publish("2");
  const before = cli("list", "--format", "json").out;
  keyOut();
  try {
    const r = cli("create", "--target", "2", "--tag", "main", "--waves", "50%,100%");
    expect({ code: r.code, err: r.err }).toEqual({ code: 3, err: expect.stringContaining("409: Cannot create a rollout of version 2: the TUF targets key is offline") });
    expect(r.err).toContain("put the targets key file back into the gateway's tuf/keys/ (docs/keys.md");
    expect(cli("list", "--format", "json").out).toBe(before);
  } finally {
    keyBack();
  }
  // With the key back, the same request is made: nothing of the refused one stands in its way ("an active rollout of it exists").
  expect(created("--target", "2", "--waves", "50%,100%").state).toBe("running");
}, 60_000);

test("cancel is committed with the targets key offline and says the devices are told once it is back; back, the withheld devices stop seeing the version within seconds, without a publish", async () => {
  const r = created("--target", "3", "--waves", "50%,100%", "--soak", "1h");
  await publish("3");
  const wave1 = await offered("3");
  expect(wave1).toHaveLength(5);

  keyOut();
  try {
    const cancelled = cli("cancel", r.id);
    expect({ code: cancelled.code, err: cancelled.err }).toEqual({ code: 0, err: "" });
    expect(cancelled.out).toContain(`rollout:  ${r.id}  CANCELLED`);
    expect(cancelled.out).toContain("the TUF targets key is offline, so the devices are told once it is back in the gateway's tuf/keys/ (docs/keys.md)");
    expect((await show(r.id)).state).toBe("cancelled");
    // Until then the devices keep the metadata they verified: telling them needs targets signed anew.
    expect(await offered("3")).toEqual(wave1);
  } finally {
    keyBack();
  }
  await until("the wave-1 devices no longer offered 3", async () => names(await offered("3")), (d) => d.length === 0, 10_000, 200);
  expect(readFileSync(gw.logFile, "utf8")).toContain("rollouts: signed the metadata versions that rollout changes waited for: devices see them at their next check");
}, 60_000);

test("advance is refused with 409 while the targets key is offline and changes nothing; accepted with it back, the newly released devices see the version without a publish", async () => {
  const r = created("--target", "4", "--waves", "50%,100%", "--soak", "1h");
  await publish("4");
  expect(await offered("4")).toHaveLength(5);

  keyOut();
  try {
    const refused = cli("advance", r.id);
    expect({ code: refused.code, err: refused.err }).toEqual({ code: 3, err: expect.stringContaining(`409: Cannot advance rollout "${r.id}": the TUF targets key is offline`) });
    expect(refused.err).toContain("(docs/keys.md");
    expect(await show(r.id)).toMatchObject({ state: "running", wave: 0 });
    expect(await offered("4")).toHaveLength(5);
  } finally {
    keyBack();
  }

  const advanced = cli("advance", r.id);
  expect({ code: advanced.code, err: advanced.err }).toEqual({ code: 0, err: "" });
  expect(advanced.out).toContain("reason:   advanced by an operator to wave 2");
  expect(advanced.out).not.toContain("targets key");
  expect(await offered("4")).toHaveLength(10);
}, 60_000);

test("the tick halts a failing rollout with the targets key offline; back, the halt withholds the version from the devices that failed, by itself", async () => {
  const r = created("--target", "6", "--waves", "50%,100%", "--soak", "1h", "--max-failures", "20%");
  await publish("6");
  outcome.set("6", "start-fails");
  const wave1 = await offered("6");
  expect(wave1).toHaveLength(5);

  keyOut();
  try {
    await fleet.each((d) => d.install(d.selected()!), wave1); // they install 6 and roll back
    await until("the rollout halted", () => show(r.id), (d) => d.state === "halted", 15_000, 200);
    expect(await offered("6")).toEqual(wave1);
  } finally {
    keyBack();
  }
  await until("6 offered to no device", async () => names(await offered("6")), (d) => d.length === 0, 10_000, 200);
}, 60_000);

test("the tick holds a due wave back while the targets key is offline, and says so; back, it releases the wave by itself", async () => {
  const r = created("--target", "7", "--waves", "50%,100%", "--soak", "1s");
  await publish("7");
  const wave1 = await offered("7");
  expect(wave1).toHaveLength(5);

  keyOut();
  try {
    await fleet.each((d) => d.install(d.selected()!), wave1); // they install 7, healthy
    const settled = await until("wave 1 settled", () => show(r.id), (d) => d.counts.some((c) => c.wave === 0 && c.status === "succeeded" && c.devices === 5), 15_000, 200);
    expect(settled.wave).toBe(0);
    await until("the log saying wave 2 waits", () => readFileSync(gw.logFile, "utf8"), (log) => log.includes(`rollout ${r.id}: wave 2 is due, but waits: the TUF targets key is offline`), 10_000, 200);
    await Bun.sleep(1000); // more ticks
    expect((await show(r.id)).wave).toBe(0);
    expect(await offered("7")).toEqual(wave1);
  } finally {
    keyBack();
  }
  await until("wave 2 released by the tick", () => show(r.id), (d) => d.wave === 1, 10_000, 200);
  expect(await offered("7")).toHaveLength(10);
}, 60_000);

test("a gateway restarted while the targets key is offline still tells the devices of a cancel made before, once the key is back", async () => {
  const r = created("--target", "8", "--waves", "50%,100%", "--soak", "1h");
  await publish("8");
  expect(await offered("8")).toHaveLength(5);
  keyOut();
  try {
    expect(cli("cancel", r.id).code).toBe(0);
    await gw.stop();
    gw = await startGateway({ dataDir: gw.dataDir, args: ["--rollout-tick", "0.2"] });
    // Restarted, it holds no copy of the key to sign views with: the devices that have one get an error, never the main chain.
    await expect(fleet.devices[0]!.refresh()).rejects.toThrow("Cannot sign TUF targets metadata");
  } finally {
    keyBack();
  }
  await until("8 offered to no device", async () => names(await offered("8")), (d) => d.length === 0, 10_000, 200);
}, 90_000);
