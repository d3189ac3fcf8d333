/**
 * What decides what a device runs, end to end: the app shortlist, the tags,
 * the storage watermark (refused before downloading), and the daemon picking
 * up a newly published target by itself and stopping cleanly on SIGTERM.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import {
  Device, httpdCompose, httpdImage, httpGet, Publisher, pushImage, startTwoAppFleet,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway, type TwoAppFleet,
} from "./_setup.ts";
import { until } from "../harness/tmp.ts";

const A = "fioupsela";
const B = "fioupselb";
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let pub: Publisher;
let portA: number;
let portB: number;
const devices: Device[] = [];

async function newDevice(): Promise<Device> {
  const d = await Device.create(dockerd);
  devices.push(d);
  return d;
}

let fleet: TwoAppFleet;

beforeAll(async () => {
  fleet = await startTwoAppFleet([{ name: A, repo: "test/sela", body: "a v1" }, { name: B, repo: "test/selb", body: "b v1" }]);
  ({ dockerd, upstream, gw, pub } = fleet);
  [portA, portB] = fleet.ports;
}, 120_000);

afterAll(async () => {
  await devices[0]?.cleanup([A, B]).catch(() => {});
  await fleet?.stop();
});

describe("fioup selection", () => {
  test("the shortlist decides which apps run", async () => {
    const d = await newDevice();
    await d.register(gw, ["--apps", B]);
    const r = await d.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain("Warning: the apps shortlist");
    expect(await httpGet(portB)).toBe("b v1");
    expect(await httpGet(portA)).toBeUndefined();
    const st = await d.fioup("status");
    expect(Object.keys(st.json.apps)).toEqual([B]);
    await d.cleanup([A, B]);
  }, 120_000);

  test("a shortlist naming an app the target does not have (a typo) is said by check, at the update and by register --force, with the target's apps", async () => {
    const d = await newDevice();
    await d.register(gw, ["--apps", "nosuch"]);
    const apps = [A, B].sort().join(", ");
    const warning = `Warning: the apps shortlist names "nosuch", which amd64-linux-1 does not have (its apps: ${apps}): this device will run none of its apps`;
    // Said before anything is installed: check knows the target it would update to.
    const c = await d.fioup("check");
    expect(c.stderr).toContain(warning);
    expect(c.json.shortlistWarning).toContain(warning);
    const r = await d.fioup("update");
    expect(r.stderr).toContain(warning);
    expect(await httpGet(portA)).toBeUndefined();
    // Registering again with another typo, on a device that runs a target: said at once.
    const again = await d.fioup("register", "--force", "--server", gw.url, "--token", gw.adminToken, "--hwid", "amd64-linux", "--apps", `${B},tikcer`);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain(`Warning: the apps shortlist names "tikcer", which amd64-linux-1 does not have (its apps: ${apps}); set the shortlist with`);
    await d.cleanup([A, B]);
  }, 120_000);

  test("a device whose tags no target carries finds no matching target", async () => {
    const d = await newDevice();
    await d.register(gw, ["--tag", "no-such-tag"]);
    const r = await d.fioup("update");
    expect(r.code, r.stderr).toBe(22);
    expect(r.stderr).toContain("no-such-tag");
    // And what there is instead: the tags CI published under (it was the bare "none for ... tags no-such-tag").
    expect(r.stderr).toMatch(/; targets for amd64-linux carry the tags master \(a device follows its registration token's tags; gateway devices tag changes them\)/);
  }, 120_000);

  test("a storage watermark too low refuses before downloading, saying what is needed", async () => {
    const d = await newDevice();
    await d.register(gw);
    d.dropIn("50-watermark.toml", "[pacman]\nstorage_watermark = 1\n");
    const r = await d.fioup("update");
    expect(r.code, r.stderr).toBe(41);
    expect(r.stderr).toMatch(/need .* available/);
    // No layer came down (only the manifests and bundles init needs to list what is missing).
    expect(Math.max(0, ...(await d.blobs()).values())).toBeLessThan(64 * 1024);
    expect(await d.ingestBytes()).toBe(0);
    // Space can be freed (here: the watermark raised again), so the target is not marked bad:
    // refused again while there is no room, installed by the next plain update once there is.
    expect((await d.fioup("update")).code).toBe(41);
    expect((await d.fioup("status", "--no-apps")).json.badTargets).toEqual([]);
    rmSync(join(d.root, "etc/sota/conf.d/50-watermark.toml"));
    const ok = await d.fioup("update");
    expect(ok.code, ok.stderr).toBe(0);
    await d.cleanup([A, B]);
  }, 120_000);

  test("the daemon installs a newly published target by itself and stops cleanly on SIGTERM", async () => {
    const d = await newDevice();
    await d.register(gw);
    const daemon = d.spawn(["daemon"]);
    try {
      const serving = (port: number, body: string) => until(`port ${port} to serve "${body}"`, () => httpGet(port), (b) => b === body, 60_000, 200);
      await serving(portA, "a v1");
      const a2 = await pushImage(upstream, "test/sela", "v2", httpdImage("a v2"));
      await pub.commit({ [`${A}/docker-compose.yml`]: httpdCompose(a2, portA) });
      const published = Date.now();
      await pub.publish(2);
      await serving(portA, "a v2");
      console.error(`publish-to-running with 1 s polling: ${Date.now() - published} ms`);
      expect(await httpGet(portB)).toBe("b v1");
      // Serving is not done: the start step still waits for it to stay up, and SIGTERM ends that wait at once.
      await until("the update to complete", () => d.updateState()?.state, (st) => st === "completed", 30_000, 100);
    } finally {
      daemon.kill("SIGTERM");
    }
    const code = await Promise.race([daemon.exited, Bun.sleep(30_000).then(() => "timeout")]);
    expect(code).toBe(0);
    const st = await d.fioup("status", "--no-apps");
    expect(st.json.current.name).toBe("amd64-linux-2");
    expect(st.json.queuedEvents).toBe(0);
  }, 120_000);
});
