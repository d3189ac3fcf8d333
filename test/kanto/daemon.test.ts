/**
 * `fioup daemon` on a registered device whose sota.toml has an `[mqtt]` table
 * runs the agent too: a compose app from the gateway and Kanto containers live
 * side by side, and a desired state never touches the compose app's containers.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { Device, freePort, httpdCompose, httpdImage, httpGet, Publisher, ROOT, startTestGateway, type TestGateway } from "../fioup/_setup.ts";
import { Proc, until } from "../harness/tmp.ts";
import { component, helloImage, KantoRig } from "./_rig.ts";

let rig: KantoRig;
let gw: TestGateway;
let device: Device;
let daemon: Proc;
const APP = `kd${process.pid}app`;

beforeAll(async () => {
  [rig, gw] = await Promise.all([KantoRig.start("dm"), startTestGateway()]);
  device = await Device.create(rig.dockerd);
  await device.register(gw);
  appendFileSync(join(device.sotaDir, "sota.toml"), `\n[mqtt]\nurl = "${rig.broker.url}"\ninstance = "${rig.tag}"\n`);
}, 120_000);

afterAll(async () => {
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
