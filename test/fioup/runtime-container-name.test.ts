/**
 * An app renamed in a new target (its folder in the containers repo renamed) whose service has a
 * fixed `container_name`: the old app's container is stopped, not removed, until the update
 * completes, and it held the name the renamed app's `compose up` asked for. The update then failed
 * and rolled back, every time. Now the stopped container of the other app is renamed aside, and a
 * rollback brings the old app back under its name with its container, anonymous volume and all.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import {
  Device, Publisher, freePort, httpGet, httpdImage, pushImage, startDockerRegistry, startDockerd, startTestGateway,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "./_setup.ts";

const OLD = `kiosk${process.pid}`;
const NEW = `kioskui${process.pid}`;
const NAME = `kiosk-web-${process.pid}`;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let port: number;

/** An app of one service named `NAME` answering `body` on `port`, with an anonymous volume at /data; `extra` adds to the service. */
const compose = (image: string, extra = "") =>
  `services:\n  web:\n    image: ${image}\n    container_name: ${NAME}\n    stop_grace_period: 1s\n    volumes:\n      - /data\n    ports:\n      - "127.0.0.1:${port}:80"\n${extra}`;

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  port = await freePort();
  const v1 = await pushImage(upstream, "test/kiosk", "v1", httpdImage("kiosk v1"));
  pub = await Publisher.create(gw, upstream, { [`${OLD}/docker-compose.yml`]: compose(v1) });
  device = await Device.create(dockerd);
  await device.register(gw);
  await pub.publish(1);
}, 120_000);

afterAll(async () => {
  await device?.cleanup([OLD, NEW]).catch(() => {});
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

/** Renames the app's folder to `NEW` with `text` as its compose file, and publishes `version`. */
async function renameTo(text: string, version: number) {
  rmSync(join(pub.dir, OLD), { recursive: true, force: true });
  rmSync(join(pub.dir, NEW), { recursive: true, force: true });
  await pub.commit({ [`${NEW}/docker-compose.yml`]: text });
  await pub.publish(version);
}

describe("an app renamed, its service keeping its container_name", () => {
  test("a renamed app that fails to start rolls back to the old app, which gets its container name back, and its anonymous volume's data", async () => {
    expect((await device.fioup("update")).code).toBe(0);
    expect(await httpGet(port)).toBe("kiosk v1");
    await dockerd.docker("exec", NAME, "sh", "-c", "echo kept > /data/marker");
    const v2 = await pushImage(upstream, "test/kiosk", "v2", httpdImage("kiosk v2"));
    await renameTo(compose(v2, `    healthcheck:\n      test: ["CMD", "false"]\n      interval: 1s\n      retries: 1\n`), 2);
    const r = await device.fioup("update");
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.stderr).not.toContain("already in use");
    expect(await httpGet(port)).toBe("kiosk v1");
    expect((await dockerd.docker("ps", "--filter", `name=^/${NAME}$`, "--format", "{{.Label \"com.docker.compose.project\"}}")).trim()).toBe(OLD);
    expect((await dockerd.docker("exec", NAME, "cat", "/data/marker")).trim()).toBe("kept");
  }, 240_000);

  test("a renamed app starts under the name its old one held, and the update completes", async () => {
    const v3 = await pushImage(upstream, "test/kiosk", "v3", httpdImage("kiosk v3"));
    await renameTo(compose(v3), 3);
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.state).toBe("completed");
    expect(await httpGet(port)).toBe("kiosk v3");
    expect((await dockerd.docker("ps", "-a", "--filter", `name=^/${NAME}$`, "--format", "{{.Label \"com.docker.compose.project\"}}")).trim()).toBe(NEW);
  }, 240_000);
});
