/**
 * A real device after `gateway registry gc --untargeted`: fioup runs v1 of an app, v2 (a new
 * image) is published, v1's target is removed (as retention does to old versions while devices
 * still run them) and gc removes what only v1 used; the device then updates to v2 with `fioup
 * update`, fetching from the collected registry, and the app answers with v2's body.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { targetName } from "../../lib/api/target.ts";
import { Device, freePort, httpGet, httpdCompose, httpdImage, pushImage, startDockerRegistry, startDockerd, startTestGateway, deviceOnV1 } from "../fioup/_setup.ts";
import type { DockerRegistryHandle, DockerdHandle, Publisher, TestGateway } from "../fioup/_setup.ts";
import { run } from "../harness/tmp.ts";

const APP = `gcapp${process.pid}`;
const REPO = join(import.meta.dir, "..", "..");
/** The gateway, its upstream registry, and a device running v1 of APP on `port`. */
let fleet: { dockerd: DockerdHandle; upstream: DockerRegistryHandle; gw: TestGateway; device: Device; pub: Publisher; port: number };

beforeAll(async () => {
  const [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  const [port, device] = await Promise.all([freePort(), Device.create(dockerd)]);
  const { pub } = await deviceOnV1({ gw, upstream, device, app: APP, repo: "test/web", port, body: "hello v1" });
  fleet = { dockerd, upstream, gw, device, pub, port };
}, 180_000);

afterAll(async () => {
  await fleet?.device.cleanup([APP]).catch(() => {});
  await Promise.all([fleet?.gw.stop(), fleet?.upstream.stop()]);
  await fleet?.dockerd.stop();
}, 180_000);

describe("fioup after gateway registry gc --untargeted", () => {
  test("a device on a removed target updates to the remaining one", async () => {
    const { upstream, gw, device, pub, port } = fleet;
    expect(await httpGet(port)).toBe("hello v1");
    const web2 = await pushImage(upstream, "test/web", "v2", httpdImage("hello v2"));
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(web2, port) });
    await pub.publish(2);
    await gw.admin(`/admin/targets/${targetName("amd64-linux", "1")}`, { method: "DELETE" });

    const gc = await run([process.execPath, join(REPO, "gateway/main.ts"), "registry", "gc", "--data", gw.dataDir, "--untargeted", "--grace", "0s"], { allowFail: true });
    expect(gc.stderr).toBe("");
    expect(gc.stdout).toMatch(/^removed [1-9][0-9]* manifests no target reaches and [1-9][0-9]* blobs/);

    const u = await device.fioup("update");
    expect(u.code, u.stderr).toBe(0);
    expect(await httpGet(port)).toBe("hello v2");
  }, 180_000);
});
