/**
 * `fioup daemon` on a registered device whose sota.toml has an `[mqtt]` table
 * runs the agent too: a compose app from the gateway and Kanto containers live
 * side by side, and a desired state never touches the compose app's containers.
 * Started while a separate `fioup agent` holds the state dir, the daemon runs
 * without its agent and takes the role over once that agent stops.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { Device, freePort, httpdCompose, httpdImage, httpGet, Publisher, ROOT, startTestGateway, type TestGateway } from "../fioup/_setup.ts";
import { Proc, until } from "../harness/tmp.ts";
import { HELD_RETRY_MS } from "../../fioup/agent/beside-daemon.ts";
import { component, helloImage, KantoRig } from "./_rig.ts";

let rig: KantoRig;
let gw: TestGateway;
let device: Device;
let daemon: Proc;
let separate: Proc | undefined;
const APP = `kd${process.pid}app`;

beforeAll(async () => {
  [rig, gw] = await Promise.all([KantoRig.start("dm"), startTestGateway()]);
  device = await Device.create(rig.dockerd);
  await device.register(gw);
  appendFileSync(join(device.sotaDir, "sota.toml"), `\n[mqtt]\nurl = "${rig.broker.url}"\ninstance = "${rig.tag}"\n`);
}, 120_000);

afterAll(async () => {
  await separate?.stop(10_000);
  await daemon?.stop(10_000);
  await device?.cleanup([APP]).catch(() => {});
  await gw?.stop();
  await rig?.stop();
});

test("the daemon runs the agent beside the compose apps; a desired state leaves the compose containers alone", async () => {
  const port = await freePort();
  const web = await rig.push("kanto/web", httpdImage("compose app"));
  const pub = await Publisher.create(gw, rig.registry, { [`${APP}/docker-compose.yml`]: httpdCompose(web, port) });
  await pub.publish(1);
  const since = rig.msgs.length;
  daemon = Proc.start({ name: "fioup daemon", cmd: [process.execPath, join(ROOT, "fioup/main.ts"), "daemon"], env: device.env(), cwd: ROOT, logFile: join(rig.dir, "daemon.log") });
  rig.agent = daemon; // its log in error messages
  await rig.waitFor((m) => m.topic === "containersupdate/currentstate" && m.activityId.startsWith("initial-current-state-"), 60_000, since);
  // The compose app comes from the gateway.
  await until("the compose app to serve", () => httpGet(port), (body) => body === "compose app", 90_000, 250);
  expect(await httpGet(port)).toBe("compose app");
  const composeIds = async () => (await rig.dockerd.docker("ps", "-q", "--no-trunc", "--filter", `label=com.docker.compose.project=${APP}`)).trim();
  const before = await composeIds();
  expect(before).not.toBe("");

  const hello = await rig.push("library/hello-world", helloImage());
  expect(await rig.apply("dm-1", [component(rig.name("hello"), hello)])).toMatchObject({ status: "COMPLETED" });
  expect((await rig.containers()).get(rig.name("hello"))?.state).toBe("running");
  // Nothing desired: the agent's container goes, the compose app's stay.
  expect(await rig.apply("dm-2", [])).toMatchObject({ status: "COMPLETED" });
  expect((await rig.containers()).has(rig.name("hello"))).toBe(false);
  expect(await composeIds()).toBe(before);
  expect(await httpGet(port)).toBe("compose app");
}, 180_000);

test("a daemon started while a separate `fioup agent` holds the state dir runs without its agent, and its own takes over within the interval once that agent stops", async () => {
  await daemon.stop(10_000); // the first test's
  const initial = (since: number) => rig.waitFor((m) => m.topic === "containersupdate/currentstate" && m.activityId.startsWith("initial-current-state-"), 60_000, since);
  let since = rig.msgs.length;
  separate = Proc.start({ name: "separate fioup agent", cmd: [process.execPath, join(ROOT, "fioup/main.ts"), "agent", "--sota-dir", device.sotaDir], env: device.env(), cwd: ROOT, logFile: join(rig.dir, "separate-agent.log") });
  rig.agent = separate;
  await initial(since);
  daemon = Proc.start({ name: "fioup daemon", cmd: [process.execPath, join(ROOT, "fioup/main.ts"), "daemon"], env: device.env(), cwd: ROOT, logFile: join(rig.dir, "daemon-held.log") });
  await daemon.waitForLog(`agent: not started, the daemon runs without it: Cannot start the agent: another agent (PID ${separate.pid})`, 60_000);
  // The separate agent serves meanwhile; the daemon looks again quietly.
  expect(await rig.apply("dm-held-1", [])).toMatchObject({ status: "COMPLETED" });

  since = rig.msgs.length;
  const from = daemon.logSize();
  await separate.stop(10_000);
  rig.agent = daemon;
  // Within one look (HELD_RETRY_MS), with room for a loaded machine.
  await daemon.waitForLog(`agent: the agent with PID ${separate.pid} stopped: the daemon's own starts`, HELD_RETRY_MS + 10_000, from);
  await initial(since);
  const hello = await rig.push("library/hello-world", helloImage());
  expect(await rig.apply("dm-held-2", [component(rig.name("held"), hello)])).toMatchObject({ status: "COMPLETED" });
  expect((await rig.containers()).get(rig.name("held"))?.state).toBe("running");
  expect(daemon.logTail(1 << 20).match(/agent: not started/g)).toHaveLength(1);
}, 180_000);
