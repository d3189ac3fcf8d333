/**
 * Watch mode and the install gate: a bundle on a watched stick whose install an update lock
 * holds back is fetched and left pending, said once as deferred (not as a failure); once the
 * lock is released the watch installs it, the stick still in, with no one touching the bundle.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { sleep, until } from "../harness/tmp.ts";
import { httpGet, type Device } from "../fioup/_setup.ts";
import { gatewayExport, goOffline, offlineRig, publishHttpd, type OfflineRig } from "./_setup.ts";

const APP = `whold${process.pid}`;
const HWID = "amd64-linux";
let rig: OfflineRig;
let device: Device;
let port: number;
let bundles: string;

beforeAll(async () => {
  rig = await offlineRig({ app: APP, repo: "offline/hold", body: "hold v1", tmp: "watch-hold-" });
  ({ device, port, bundles } = rig);
  await publishHttpd(rig, 2, "hold v2");
  await gatewayExport(rig.gw, { target: 2, from: 1, hwid: HWID, out: join(bundles, "stick"), args: ["--insecure-registry", rig.upstream.host] });
  await goOffline(device);
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

describe("watching a stick while installs are held back", () => {
  test("a bundle whose install an update lock defers is installed by the watch once the lock is released", async () => {
    expect((await device.fioup("lock")).code).toBe(0);
    const watcher = device.spawn(["update", "--offline", join(bundles, "stick"), "--watch", "--interval", "1"]);
    try {
      await until("the bundle's update to be fetched and held", () => device.updateState()?.state, (s) => s === "fetched", 60_000, 100);
      await sleep(3000); // a few more rounds, the lock still held
      expect(await httpGet(port)).toBe("hold v1");
      expect((await device.fioup("unlock")).code).toBe(0);
      await until("the held update to complete once unlocked", () => device.updateState()?.state, (s) => s === "completed", 30_000, 100);
      expect(await httpGet(port)).toBe("hold v2");
    } finally {
      watcher.kill("SIGTERM");
    }
    expect(await watcher.exited).toBe(0);
    const log = await new Response(watcher.stderr).text();
    expect(log).not.toContain("update failed");
    // Said once, though each round found it held.
    expect(log.split(`bundle ${join(bundles, "stick")}: install deferred: Install of ${HWID}-2 deferred: held by update lock "fioup"`).length - 1, log).toBe(1);
    expect(log).toContain(`updated to ${HWID}-2 (completed)`);
    expect((await device.fioup("status")).json.current.name).toBe(`${HWID}-2`);
  }, 150_000);
});
