/**
 * Watch mode and the install gate: a bundle on a watched stick whose install an update lock
 * holds back is fetched and left pending, said once as deferred (not as a failure); once the
 * lock is released the watch installs it, the stick still in, with no one touching the bundle.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { sleep, tempDir, until } from "../harness/tmp.ts";
import {
  Device, deviceOnV1, freePort, httpGet, httpdCompose, httpdImage, pushImage, startDockerRegistry, startDockerd, startTestGateway,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "../fioup/_setup.ts";
import { dropIn, gatewayExport, OFFLINE_DROP_IN, offlineToml } from "./_setup.ts";

const APP = `whold${process.pid}`;
const HWID = "amd64-linux";
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let port: number;
let bundles: string;

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  device = await Device.create(dockerd);
  port = await freePort();
  bundles = await tempDir("watch-hold-");
  const { pub } = await deviceOnV1({ gw, upstream, device, app: APP, repo: "offline/hold", port, body: "hold v1" });
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(await pushImage(upstream, "offline/hold", "v2", httpdImage("hold v2")), port) });
  await pub.publish(2);
  await gatewayExport(gw, { target: 2, from: 1, hwid: HWID, out: join(bundles, "stick"), args: ["--insecure-registry", upstream.host] });
  dropIn(device, OFFLINE_DROP_IN, offlineToml(await freePort()));
}, 120_000);

afterAll(async () => {
  await device?.cleanup([APP]).catch(() => undefined);
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
  if (bundles) rmSync(bundles, { recursive: true, force: true });
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
