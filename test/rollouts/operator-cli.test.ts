/**
 * What an operator reads from the `gateway rollouts` commands while a rollout moves: the reason
 * `show` prints after a resume, a halt or a completion that follows accepted failures, an
 * advance of a paused rollout, and whether `cancel` does what its --help says. A real gateway
 * (`gateway serve`, fast tick), simulated devices checking in over mTLS with verified TUF
 * metadata, and the CLI as a user runs it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { RolloutDetail } from "../../lib/api/admin.ts";
import { adminJson, targetEntry } from "./_fixtures.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { SimFleet, type SimOutcome } from "../harness/sim-devices.ts";
import { waitFor } from "../harness/tmp.ts";
import { gatewayRun } from "../harness/cli.ts";

const MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
let gw: GatewayHandle;
let fleet: SimFleet;
/** What a simulated device does with each version (default healthy). */
const outcome = new Map<string, SimOutcome>();

const cli = (...args: string[]) => gatewayRun(["rollouts", ...args, "--data", gw.dataDir]);
/**
 * `rollouts create --target 9 --tag main --waves 100%` plus `args` against an address where nothing
 * listens, with a well-formed token: bad input exits 2 before any network call, good input 4.
 */
const offlineCreate = (...args: string[]) => {
  const cmd = [process.execPath, MAIN, "rollouts", "create", ...(args.includes("--target") ? [] : ["--target", "9"]), "--tag", "main", "--waves", "100%", ...args];
  const r = Bun.spawnSync([...cmd, "--server", "https://127.0.0.1:1", "--token", `s.${"0".repeat(64)}`], { stderr: "pipe" });
  return { code: r.exitCode, err: r.stderr.toString() };
};
const created = (...args: string[]): RolloutDetail => {
  const r = cli("create", "--tag", "main", "--health-window", "1s", ...args, "--format", "json");
  if (r.code !== 0) throw new Error(`rollouts create exited ${r.code}: ${r.err}`);
  return JSON.parse(r.out) as RolloutDetail;
};
const state = async (id: string) => (await adminJson<RolloutDetail>(gw, `/admin/rollouts/${id}`)).state;
const publish = (version: string) => adminJson(gw, "/admin/targets", { targets: { [`hw-${version}`]: targetEntry(version, gw.host) } });

beforeAll(async () => {
  gw = await startGateway({ args: ["--rollout-tick", "0.2"] });
  fleet = await SimFleet.register(gw, { count: 10, initialTarget: "hw-1", pullManifests: false, behaviour: (_d, t) => outcome.get(t.entry.custom.version) ?? "healthy" });
  await publish("1");
}, 120_000);
afterAll(async () => {
  await gw?.stop();
});

test("after a halt, resume says which failures it accepted; the completion names them apart instead of \"5 failed (0%)\"", async () => {
  const r = created("--target", "2", "--waves", "50%,100%", "--soak", "1s", "--max-failures", "20%");
  await publish("2");
  outcome.set("2", "start-fails");
  await fleet.cycle(); // the 5 devices of wave 1 install 2 and roll back
  await waitFor({ service: "gateway", what: "the rollout halted by itself", ready: async () => (await state(r.id)) === "halted", logFile: gw.logFile, timeoutMs: 15_000 });
  // The halt comes with the first failures over the limit (its tick is 0.2 s): on a loaded machine
  // before the last of the 5 reports are stored. The resume below must find all 5.
  const failed = async () => (await adminJson<RolloutDetail>(gw, `/admin/rollouts/${r.id}`)).counts.filter((c) => c.status === "failed").reduce((n, c) => n + c.devices, 0);
  await waitFor({ service: "gateway", what: "all 5 failures of wave 1 stored", ready: async () => (await failed()) === 5, logFile: gw.logFile, timeoutMs: 15_000 });
  const reason = /reason: {3}halted at (\d+)% failures \((\d) of 5 devices in wave 1\), over the 20% limit\n/.exec(cli("show", r.id).out);
  expect(reason).not.toBeNull();
  expect({ percent: Number(reason![1]), over: Number(reason![2]) > 1 }).toEqual({ percent: Number(reason![2]) * 20, over: true });

  const resumed = cli("resume", r.id);
  expect(resumed.code).toBe(0);
  expect(resumed.out).toContain("RUNNING");
  expect(resumed.out).toContain("reason:   resumed by an operator from halted; the 5 failures so far are accepted, new ones count against the limit");

  outcome.set("2", "healthy");
  await waitFor({ service: "gateway", what: "wave 2 released", ready: async () => (await adminJson<RolloutDetail>(gw, `/admin/rollouts/${r.id}`)).wave === 1, logFile: gw.logFile, timeoutMs: 15_000 });
  await fleet.cycle(); // wave 2 installs 2, healthy
  await waitFor({ service: "gateway", what: "the rollout completed", ready: async () => (await state(r.id)) === "completed", logFile: gw.logFile, timeoutMs: 15_000 });
  const done = cli("show", r.id).out;
  expect(done).toContain("reason:   completed: all 10 devices settled, 5 succeeded, 5 failed (5 accepted on resume, 0% counted)");
  expect(done).toContain("wave 1 settled and soaked 1 s: 0 succeeded, 5 failed (5 accepted on resume, 0% counted)");
}, 120_000);

test("advancing a paused rollout says it is still paused; cancel does what its --help says: the devices not yet updated never get the version", async () => {
  const help = cli("cancel", "--help");
  expect(help.code).toBe(0);
  expect(help.out).toContain("never releases its version to the devices not yet updated");
  expect(help.out).toContain("Every other device, outside the released waves or released\nbut not updated yet, is not offered the version, now or later");

  // Every command's --help says what it does and in which states; show's names the states it prints.
  for (const action of ["pause", "resume", "advance", "cancel"]) expect(cli(action, "--help").out).toContain("It prints the rollout as `gateway rollouts show` does.");
  expect(cli("advance", "--help").out).toContain("Works on a running or paused rollout (a paused one stays paused); a halted one must be resumed first.");
  expect(cli("show", "--help").out).toContain("HALTED (by itself, too many\nfailures: the reason says how many; resume accepts them)");

  const r = created("--target", "3", "--waves", "10%,50%,100%", "--soak", "1h");
  await publish("3");
  await fleet.cycle(); // the one device of wave 1 installs 3
  expect(fleet.devices.filter((d) => d.current === "hw-3")).toHaveLength(1);

  expect(cli("pause", r.id).out).toContain("reason:   paused by an operator in wave 1");
  const advanced = cli("advance", r.id);
  expect(advanced.code).toBe(0);
  expect(advanced.out).toContain(`rollout:  ${r.id}  PAUSED`);
  expect(advanced.out).toContain("reason:   advanced by an operator to wave 2; still paused (resume it to go on)");

  // Wave 2 is released but has not checked in yet: cancelling now withholds 3 from it, as from wave 3.
  const cancelled = cli("cancel", r.id);
  expect(cancelled.code).toBe(0);
  expect(cancelled.out).toContain(`rollout:  ${r.id}  CANCELLED`);
  await fleet.cycle();
  await fleet.cycle();
  expect(fleet.devices.filter((d) => d.seen.has("hw-3"))).toHaveLength(1);
  expect(fleet.devices.filter((d) => d.current === "hw-3")).toHaveLength(1);

  const again = cli("pause", r.id);
  expect({ code: again.code, err: again.err }).toEqual({ code: 3, err: expect.stringContaining(`409: Cannot pause rollout "${r.id}": it is cancelled`) });
}, 120_000);

test("a rollout created before its version is published (as the docs advise) does not time its devices out while they cannot install it", async () => {
  // 8 s: after the publication the 10 devices must install and stay healthy 1 s within it, on a loaded CI machine too.
  const r = created("--target", "4", "--waves", "100%", "--soak", "1s", "--pending-timeout", "8s");
  await fleet.cycle(); // 4 is not published: nothing to install
  await Bun.sleep(9_000); // past the pending timeout, counted from the wave's start
  const waiting = cli("show", r.id).out;
  expect(waiting).toContain(`rollout:  ${r.id}  RUNNING`);
  expect(waiting).not.toContain("timeout:");
  // And says why they wait: no target of the version for their hardware id yet.
  expect(waiting).toContain("Waiting for their target:");
  expect(waiting.split("no target of version 4 for ").length - 1).toBe(10);

  // Published now (`gateway publish` stamps custom.createdAt): the timeout counts from here, and the devices update in time.
  await adminJson(gw, "/admin/targets", { targets: { "hw-4": { ...targetEntry("4", gw.host), custom: { ...targetEntry("4", gw.host).custom, createdAt: new Date().toISOString() } } } });
  await fleet.cycle();
  await waitFor({ service: "gateway", what: "the rollout completed", ready: async () => (await state(r.id)) !== "running", logFile: gw.logFile, timeoutMs: 15_000 });
  expect(cli("show", r.id).out).toContain("reason:   completed: all 10 devices settled, 10 succeeded, 0 failed (0%)");
}, 120_000);

test("a pending timeout no longer than the health window, which would fail every device, is refused: exit 2 before anything is sent, 400 from the API; nothing is created", async () => {
  const before = cli("list", "--format", "json").out;
  for (const [flags, text] of [
    [["--health-window", "2h"], "Invalid pending timeout 1h: it must be longer than the health window (2h), or every device times out before it can count as succeeded"],
    [["--pending-timeout", "5m"], "Invalid pending timeout 5m: it must be longer than the health window (10m)"],
  ] as const) {
    expect(offlineCreate(...flags)).toEqual({ code: 2, err: expect.stringContaining(`--pending-timeout: ${text}`) });
  }
  const res = await gw.adminFetch("/admin/rollouts", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ target: "9", tag: "main", waves: [100], healthWindow: "30m", pendingTimeout: "30m" }) });
  expect({ status: res.status, body: await res.json() }).toEqual({ status: 400, body: { error: expect.stringContaining("Invalid pending timeout 30m: it must be longer than the health window (30m)") } });
  expect(cli("list", "--format", "json").out).toBe(before);
});

test("a --target with a leading zero, which would gate no published version (\"0010\" is not \"10\"), is refused: exit 2, 400 from the API", async () => {
  const before = cli("list", "--format", "json").out;
  expect(offlineCreate("--target", "0010")).toEqual({ code: 2, err: expect.stringContaining('--target: Invalid target "0010": a version is written without leading zeros, as published ("10")') });
  const res = await gw.adminFetch("/admin/rollouts", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ target: "0010", tag: "main", waves: [100] }) });
  expect({ status: res.status, body: await res.json() }).toEqual({ status: 400, body: { error: expect.stringContaining('Invalid target "0010"') } });
  expect(cli("list", "--format", "json").out).toBe(before);
});

test('--window "" (an empty shell variable) is refused with exit 2, not taken as "no maintenance window"', () => {
  expect(offlineCreate("--window", "")).toEqual({ code: 2, err: expect.stringContaining('--window: Invalid maintenance window "": it is empty') });
});

test("rollouts create --help explains the duration and window forms it takes, with examples that parse", () => {
  const help = cli("create", "--help").out;
  expect(help).toContain("Durations are a whole number with its unit, s, m, h, d or w (90s, 30m, 1h, 2d).");
  // As it says: a bare number is refused (it once said "or seconds").
  expect(offlineCreate("--soak", "1800")).toEqual({ code: 2, err: expect.stringContaining("--soak") });
  const windows = [...help.matchAll(/"((?:Sat|Mon|daily)[^"]*)"/g)];
  expect(windows.map((w) => w[1])).toEqual(expect.arrayContaining(["Mon-Fri 22:00-06:00", "daily 01:00-05:00; Sat,Sun 00:00-24:00"]));
  for (const window of windows) {
    expect({ window: window[1], code: offlineCreate("--window", window[1]!).code }).toEqual({ window: window[1], code: 4 }); // parsed, then the (absent) gateway is unreachable
  }
});

test("a member that already runs a newer version times out with a reason that says so", async () => {
  expect(fleet.devices.every((d) => d.current === "hw-4")).toBe(true); // the rollout of 4 above completed
  const r = created("--target", "3", "--waves", "100%", "--soak", "1s", "--pending-timeout", "2s", "--max-failures", "100%");
  await fleet.cycle(); // 3 is published and offered again, but every device runs 4
  await waitFor({ service: "gateway", what: "every member timed out", ready: async () => (await adminJson<RolloutDetail>(gw, `/admin/rollouts/${r.id}`)).failures.length === 10, logFile: gw.logFile, timeoutMs: 15_000 });
  expect(cli("show", r.id).out).toContain("timeout: the update did not complete in time: it runs version 4, newer (fioup does not go back)");
}, 60_000);
