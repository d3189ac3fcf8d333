/**
 * Watch mode and a target name once marked bad: v2 fails to start from a bundle and is marked
 * bad; the gateway withdraws it and publishes v2 again with a fix. A watched stick with the fix
 * whose install fails for the device's reason (the Docker engine unreachable, which marks
 * nothing bad) is tried again while the stick stays in, as what the device marked bad is the
 * content that failed, not the name; once the engine answers the watch installs the fix. The watch
 * reads its config once, so the engine "comes up" as its socket appearing where the drop-in says.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { symlinkSync } from "node:fs";
import { join } from "node:path";
import { run, until } from "../harness/tmp.ts";
import { httpGet, httpdCompose, httpdImage, pushImage, ROOT, type Device } from "../fioup/_setup.ts";
import { dropIn, gatewayExport, goOffline, offlineRig, type OfflineRig } from "./_setup.ts";

const APP = `wbad${process.pid}`;
const HWID = "amd64-linux";
const NO_DOCKER = "90-no-docker.toml";
let rig: OfflineRig;
let device: Device;
let port: number;
let bundles: string;

/** Publishes v2 of the app with `image`, exported from v1 into bundles/`name`. */
async function publishV2(image: string, name: string): Promise<string> {
  await rig.pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(image, port) });
  await rig.pub.publish(2);
  const out = join(bundles, name);
  await gatewayExport(rig.gw, { target: 2, from: 1, hwid: HWID, out, args: ["--insecure-registry", rig.upstream.host] });
  return out;
}

beforeAll(async () => {
  rig = await offlineRig({ app: APP, repo: "offline/bad", body: "v1 body", tmp: "watch-bad-" });
  ({ device, port, bundles } = rig);
  const [broken, fixed] = await Promise.all([
    pushImage(rig.upstream, "offline/bad", "v2-broken", { cmd: ["sh", "-c", "exit 3"], layers: [{ "/www/index.html": "v2 broken" }] }),
    pushImage(rig.upstream, "offline/bad", "v2-fixed", httpdImage("v2 body")),
  ]);
  await goOffline(device);
  const r = await device.fioup("update", "--offline", await publishV2(broken, "broken"));
  expect(r.code, r.stderr).toBe(51);
  expect((await device.fioup("status")).json.badTargets).toEqual([`${HWID}-2`]);
  // Withdrawn on the gateway, its version published again with the fix.
  const removed = await run([process.execPath, join(ROOT, "gateway/main.ts"), "targets", "remove", `${HWID}-2`, "--data", rig.gw.dataDir], { cwd: ROOT });
  expect(removed.code, removed.stderr).toBe(0);
  await publishV2(fixed, "stick");
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

describe("watching a stick with a fix published under a name marked bad", () => {
  test("a failure of the device's is tried again while the stick stays in, and the fix installs once the engine answers", async () => {
    const stick = join(bundles, "stick");
    const socket = join(bundles, "docker.sock");
    dropIn(device, NO_DOCKER, `[fioup]\ndocker_host = "unix://${socket}"\n`);
    const watcher = device.spawn(["update", "--offline", stick, "--watch", "--interval", "1"]);
    let log = "";
    const reading = (async () => {
      for await (const chunk of watcher.stderr.pipeThrough(new TextDecoderStream())) log += chunk;
    })();
    try {
      await until("the fix's update to fail for want of the engine", () => log, (l) => l.includes("update failed"), 60_000, 100);
      symlinkSync(rig.dockerd.socket, socket); // the engine up, as after a slow boot
      // Before: "update failed: ..." once, the name taken for the bad content, and the stick never tried again.
      await until("the watch to install the fix", () => log, (l) => l.includes(`updated to ${HWID}-2 (completed)`), 30_000, 100);
    } finally {
      dropIn(device, NO_DOCKER, undefined);
      watcher.kill("SIGTERM");
    }
    expect(await watcher.exited).toBe(0);
    await reading;
    expect(log).toContain(`trying again while the bundle stays in ${stick}`);
    expect(log).toContain("Cannot reach the Docker Engine");
    expect(await httpGet(port)).toBe("v2 body");
    const st = await device.fioup("status");
    expect(st.json.current.name).toBe(`${HWID}-2`);
    expect(st.json.badTargets).toEqual([]);
  }, 120_000);
});
