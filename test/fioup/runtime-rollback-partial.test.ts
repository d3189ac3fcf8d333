/**
 * A rollback that cannot put every previous app back: the app whose previous version can no
 * longer be reinstalled (its blobs gone from the device's store) fails the rollback, but the
 * apps after it are still reinstalled and started, not left stopped until the next run.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  Device, Publisher, freePort, httpGet, httpdCompose, httpdImage, pushImage, startDockerRegistry, startDockerd, startTestGateway,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "./_setup.ts";

// Sorted so: the app that cannot be restored comes first.
const LOST = `arb${process.pid}`;
const KEPT = `brb${process.pid}`;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let ports: [number, number];

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  ports = [await freePort(), await freePort()];
  const [lost, kept] = await Promise.all([pushImage(upstream, "test/rblost", "v1", httpdImage("lost v1")), pushImage(upstream, "test/rbkept", "v1", httpdImage("kept v1"))]);
  pub = await Publisher.create(gw, upstream, { [`${LOST}/docker-compose.yml`]: httpdCompose(lost, ports[0]), [`${KEPT}/docker-compose.yml`]: httpdCompose(kept, ports[1]) });
  device = await Device.create(dockerd);
  await device.register(gw);
  await pub.publish(1);
  const r = await device.fioup("update");
  if (r.code !== 0) throw new Error(`v1 update failed: ${r.stderr}`);
}, 180_000);

afterAll(async () => {
  await device?.cleanup([LOST, KEPT]).catch(() => {});
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

test("a rollback where one previous app cannot be reinstalled still restores and starts the others, and says it failed", async () => {
  expect(await httpGet(ports[1])).toBe("kept v1");
  // v1's manifest of the first app, in the store until an update completes.
  const uri = JSON.parse(readFileSync(join(device.root, "var/sota/compose-apps", LOST, ".fioup/app.json"), "utf8")).uri as string;
  const lostManifest = join(device.storeDir, "blobs/sha256", uri.slice(uri.lastIndexOf(":") + 1));

  // v2: the first app's service exits at once (its start fails: a rollback), the second a new version.
  const kept2 = await pushImage(upstream, "test/rbkept", "v2", httpdImage("kept v2"));
  await pub.commit({
    [`${LOST}/docker-compose.yml`]: `services:\n  web:\n    image: ${upstream.host}/test/rblost:v1\n    command: ["sh", "-c", "exit 1"]\n    stop_grace_period: 1s\n`,
    [`${KEPT}/docker-compose.yml`]: httpdCompose(kept2, ports[1]),
  });
  await pub.publish(2);
  const f = await device.fioup("fetch");
  expect(f.code, f.stderr).toBe(0);
  // The first app's v1 can no longer be reinstalled.
  rmSync(lostManifest);

  const r = await device.fioup("update");
  expect(r.code).not.toBe(0);
  // The second app is back on v1 and runs.
  expect(await httpGet(ports[1])).toBe("kept v1");
  // The rollback failed all the same, and says for which app.
  expect(r.stderr).toContain("Rollback to amd64-linux-1 failed");
  expect(r.stderr).toContain(`${LOST}: cannot reinstall`);
  // The command's last word says so too, not "rolled back".
  expect(r.stderr).toContain("; the rollback to amd64-linux-1 failed too: ");
  expect(r.stderr).not.toContain("rolled back to the previous target");
  const st = await device.fioup("status");
  expect(st.json.apps[KEPT].state).toBe("healthy");
}, 240_000);
