/**
 * SIGTERM to `fioup daemon` while the start step waits for a new app's healthcheck (which
 * passes only 30 s after the container starts): the daemon stops within seconds, not when the
 * wait ends (up to 120 s, as long as systemd's TimeoutStopSec), and the update stays saved at
 * `starting`; the next run resumes it and completes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { waitFor } from "../harness/tmp.ts";
import { collectCli, Device, httpGet, httpdImage, pushImage, type DockerRegistryHandle, type Publisher, deviceRig, type DeviceRig, slowHealthCompose } from "./_setup.ts";

const APP = `sigstart${process.pid}`;
const REPO = `sigstart/web${process.pid}`;
let rig: DeviceRig;
let upstream: DockerRegistryHandle;
let device: Device;
let pub: Publisher;
let port: number;

beforeAll(async () => {
  rig = await deviceRig({ app: APP, repo: REPO, body: "sig v1" });
  ({ upstream, device, pub, port } = rig);
}, 180_000);

afterAll(async () => {
  await rig?.stop();
});

describe("fioup daemon stopped by SIGTERM during the start step's wait", () => {
  test("exits within seconds, the update saved at starting; the next run completes it", async () => {
    const ref = await pushImage(upstream, REPO, "v2", httpdImage("sig v2"));
    await pub.commit({ [`${APP}/docker-compose.yml`]: slowHealthCompose(ref, port, 30) });
    await pub.publish(2);

    const proc = device.spawn(["daemon", "--cycles", "1"]);
    const running = collectCli(proc, "fioup daemon");
    await waitFor({
      service: "fioup daemon",
      what: "the start step's wait",
      ready: () => device.updateState()?.state === "starting",
      alive: () => proc.exitCode === null,
      timeoutMs: 90_000,
    });
    await Bun.sleep(2000); // well into the wait (compose up has returned; the healthcheck says starting)
    const t0 = Date.now();
    proc.kill("SIGTERM");
    const r = await running;
    const took = Date.now() - t0;
    expect(r.code, r.stderr).toBe(0);
    expect(took, r.stderr).toBeLessThan(5000);
    expect(r.stderr).toContain("interrupted: the update to amd64-linux-2 (version 2) is saved (starting); the next start resumes it");
    expect(device.updateState()?.state).toBe("starting");

    const u = await device.fioup("update");
    expect(u.code, u.stderr).toBe(0);
    expect(u.json.state).toBe("completed");
    expect(await httpGet(port)).toBe("sig v2");
  }, 240_000);
});
