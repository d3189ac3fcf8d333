/**
 * The complete step's clean-up is best effort: a target that drops an app whose network a kept
 * app still joins (the kept app names it `external`) cannot remove it (`compose down` fails:
 * "network ... has active endpoints"). The update still completes, saying why the app was left,
 * and the device is not stuck on it: it was left `completing` for ever before, every run failing
 * the same way, `fioup update` and `fioup cancel` both refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import {
  Device, Publisher, freePort, httpGet, httpdImage, pushImage, startDockerRegistry, startDockerd, startTestGateway,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "./_setup.ts";

const OWNER = `netowner${process.pid}`;
const GUEST = `netguest${process.pid}`;
const NET = `sharednet${process.pid}`;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let ports: number[];

/** An httpd app on `port` whose default network is `NET`: made by the app, or joined (`external`). */
const compose = (image: string, port: number, external: boolean) => `services:
  web:
    image: ${image}
    stop_grace_period: 1s
    ports:
      - "127.0.0.1:${port}:80"
networks:
  default:
    name: ${NET}
${external ? "    external: true\n" : ""}`;

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  ports = [await freePort(), await freePort()];
  device = await Device.create(dockerd);
  const [owner] = await Promise.all([pushImage(upstream, `complete/owner${process.pid}`, "v1", httpdImage("owner")), device.register(gw)]);
  pub = await Publisher.create(gw, upstream, { [`${OWNER}/docker-compose.yml`]: compose(owner, ports[0]!, false) });
  await pub.publish(1);
  const r = await device.fioup("update");
  if (r.code !== 0) throw new Error(`v1 update failed: ${r.stderr}`);
  // Version 2 adds an app that joins the first one's network.
  const guest = await pushImage(upstream, `complete/guest${process.pid}`, "v1", httpdImage("guest"));
  await pub.commit({ [`${GUEST}/docker-compose.yml`]: compose(guest, ports[1]!, true) });
  await pub.publish(2);
  const r2 = await device.fioup("update");
  if (r2.code !== 0) throw new Error(`v2 update failed: ${r2.stderr}`);
}, 180_000);

afterAll(async () => {
  await device?.cleanup([OWNER, GUEST]).catch(() => {});
  await dockerd?.docker("network", "rm", NET).catch(() => {});
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

describe("the complete step's clean-up", () => {
  test("an app it cannot remove is a warning: the update completes and the next one is not refused", async () => {
    expect(await httpGet(ports[0]!)).toBe("owner");
    expect(await httpGet(ports[1]!)).toBe("guest");
    // Version 3 drops the app that made the network; the one that joined it stays.
    rmSync(join(pub.dir, OWNER), { recursive: true });
    await pub.commit({});
    await pub.publish(3);
    const u = await device.fioup("update");
    expect(u.code, u.stderr).toBe(0);
    expect(u.json.state).toBe("completed");
    expect(u.stderr).toContain(`warning: cannot remove ${OWNER}: `);
    expect(u.stderr).toContain("the update completes anyway, and the next update tries again");
    expect(await httpGet(ports[1]!)).toBe("guest");

    const st = await device.fioup("status", "--no-apps");
    expect(st.json.pending).toBeNull();
    expect(st.json.current.name).toBe("amd64-linux-3");
    // Nothing pending: the next update is checked for, not refused.
    const next = await device.fioup("update");
    expect(next.stderr).not.toContain("Cannot");
    expect(next.stderr).toContain("No update available");
  }, 180_000);
});
