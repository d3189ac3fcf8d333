/**
 * fioup end to end against the real gateway, its registry, `gateway publish`,
 * a private dockerd and docker compose: register, update v1 (with a service
 * behind a compose profile, which is not started nor waited for), a v2 that
 * changes one service fetches only the changed blobs, a v3 that crashes is
 * rolled back, marked bad and reported, and its version published again with a fix is taken;
 * a profile the app's `.env` enables is started by compose, so fioup waits for its service
 * (a crash rolls back) and reports it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  Device, Publisher, freePort, httpGet, httpdCompose, httpdImage, pushImage, startDockerRegistry, startDockerd, startTestGateway,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "./_setup.ts";

const APP = `fioupe2e${process.pid}`;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let port: number;
let uuid: string;

const sidecar = (image: string) => `  side:\n    image: ${image}\n    stop_grace_period: 1s\n`;
/** A service only for debugging: compose starts it only when its profile is enabled (COMPOSE_PROFILES in the app's `.env`). */
const profiled = (image: string) => `  debug:\n    image: ${image}\n    profiles: ["debug"]\n`;

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  port = await freePort();
  const [web1, side] = await Promise.all([
    pushImage(upstream, "test/web", "v1", httpdImage("hello v1")),
    pushImage(upstream, "test/side", "v1", { cmd: ["sleep", "3600"] }),
  ]);
  pub = await Publisher.create(gw, upstream, { [`${APP}/docker-compose.yml`]: httpdCompose(web1, port, sidecar(side) + profiled(side)) });
  device = await Device.create(dockerd);
}, 120_000);

afterAll(async () => {
  await device?.cleanup([APP]).catch(() => {});
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

describe("fioup update", () => {
  test("register, then update to v1: the app answers on 127.0.0.1; its profiled service is not waited for", async () => {
    uuid = await device.register(gw);
    const again = await device.fioup("register", "--server", gw.url, "--token", gw.adminToken);
    expect(again.code).toBe(12); // already registered

    await pub.publish(1);
    const check = await device.fioup("check");
    expect(check.code).toBe(0);
    expect(check.json.update.name).toBe("amd64-linux-1");

    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.state).toBe("completed");
    expect(r.json.bytesFetched).toBeGreaterThan(0);
    expect(await httpGet(port)).toBe("hello v1");

    const none = await device.fioup("update");
    expect(none.code).toBe(3);
    const st = await device.fioup("status");
    expect(st.json.current.name).toBe("amd64-linux-1");
    expect(st.json.apps[APP].state).toBe("healthy");
    expect(st.json.apps[APP].services.map((x: { name: string }) => x.name).sort()).toEqual(["side", "web"]); // not debug: never started
    // The gateway got the apps-states report and sees the device on v1.
    const dev = await gw.admin<{ currentTarget: string | null; appsStates: { apps: Record<string, { state: string }> } | null }>(`/admin/devices/${uuid}`);
    expect(dev.appsStates?.apps[APP]?.state).toBe("healthy");
  }, 120_000);

  test("v2 changing one service fetches only the blobs the device lacks", async () => {
    const web2 = await pushImage(upstream, "test/web", "v2", httpdImage("hello v2"));
    const side = `${upstream.host}/test/side:v1`;
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(web2, port, sidecar(side)) });
    await pub.publish(2);
    const before = await device.blobs();
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    const after = await device.blobs();
    const added = [...after].filter(([d]) => !before.has(d));
    const addedBytes = added.reduce((s, [, n]) => s + n, 0);
    expect(r.json.bytesFetched).toBe(addedBytes);
    // The busybox base layer (about 1 MB) is shared and was not fetched again.
    const biggest = Math.max(...after.values());
    expect(r.json.bytesFetched).toBeLessThan(biggest);
    expect(await httpGet(port)).toBe("hello v2");
  }, 120_000);

  test("v3 whose container exits at once rolls back to v2, is marked bad, not retried, and reported", async () => {
    // Its last words name a full disk: the app's own output, not the device's trouble (the target is still bad).
    const bad = await pushImage(upstream, "test/web", "v3", { cmd: ["sh", "-c", "echo cannot write cache: No space left on device; exit 3"], layers: [{ "/www/index.html": "v3" }] });
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(bad, port, sidecar(`${upstream.host}/test/side:v1`)) });
    await pub.publish(3);
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(51);
    expect(await httpGet(port)).toBe("hello v2");
    const st = await device.fioup("status");
    expect(st.json.current.name).toBe("amd64-linux-2");
    expect(st.json.badTargets).toEqual(["amd64-linux-3"]);
    expect(st.json.queuedEvents).toBe(0);

    const again = await device.fioup("update");
    expect(again.code).toBe(3); // v3 is bad: not retried

    const { updates } = await gw.admin<{ updates: { targetName: string; success?: boolean; events: { eventType: { id: string } }[] }[] }>(
      `/admin/devices/${uuid}/updates`,
    );
    const v3 = updates.find((u) => u.targetName === "amd64-linux-3");
    expect(v3?.success).toBe(false);
    const v2 = updates.find((u) => u.targetName === "amd64-linux-2");
    expect(v2?.success).toBe(true);
    expect(v2?.events.map((e) => e.eventType.id)).toEqual([
      "MetadataUpdateCompleted",
      "UpdateInitStarted",
      "UpdateInitCompleted",
      "EcuDownloadStarted",
      "EcuDownloadCompleted",
      "EcuInstallationStarted",
      "EcuInstallationApplied",
      "EcuInstallationCompleted",
    ]);
  }, 120_000);

  test("the bad v3 withdrawn and its version published again with a fix: the device takes the fix, as what failed is the content, not the name", async () => {
    // As after `gateway targets remove`, or a gateway restored from a backup older than v3.
    await gw.admin("/admin/targets/amd64-linux-3", { method: "DELETE" });
    const fixed = await pushImage(upstream, "test/web", "v3-fixed", httpdImage("hello v3 fixed"));
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(fixed, port, sidecar(`${upstream.host}/test/side:v1`)) });
    await pub.publish(3);
    const check = await device.fioup("check");
    expect(check.json.available.find((t: { name: string }) => t.name === "amd64-linux-3")).toMatchObject({ bad: false });
    expect(check.json.update?.name).toBe("amd64-linux-3");
    // Before: "No update available: running amd64-linux-2", for good.
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(await httpGet(port)).toBe("hello v3 fixed");
    const st = await device.fioup("status");
    expect(st.json.current.name).toBe("amd64-linux-3");
    expect(st.json.badTargets).toEqual([]);
  }, 120_000);

  test("fetch, install, start one step at a time; cancel after install restores the running version", async () => {
    const web4 = await pushImage(upstream, "test/web", "v4", httpdImage("hello v4"));
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(web4, port, sidecar(`${upstream.host}/test/side:v1`)) });
    await pub.publish(4);
    expect((await device.fioup("start")).code).toBe(24); // no update in progress
    const f = await device.fioup("fetch");
    expect(f.code, f.stderr).toBe(0);
    expect(f.json.state).toBe("fetched");
    expect((await device.fioup("start")).code).toBe(10); // not installed yet
    const i = await device.fioup("install");
    expect(i.code, i.stderr).toBe(0);
    expect(i.json.state).toBe("installed");
    const c = await device.fioup("cancel");
    expect(c.code, c.stderr).toBe(0);
    expect(c.json.state).toBe("canceled");
    expect(await httpGet(port)).toBe("hello v3 fixed");

    expect((await device.fioup("fetch")).code).toBe(0);
    expect((await device.fioup("install")).code).toBe(0);
    const s = await device.fioup("start");
    expect(s.code, s.stderr).toBe(0);
    expect(s.json.state).toBe("completed");
    expect(await httpGet(port)).toBe("hello v4");
  }, 120_000);

  test("v5 whose .env enables the profile of a service that exits 1 rolls back to v4: compose starts it, so fioup waits for it", async () => {
    const broken = await pushImage(upstream, "test/side", "broken", { cmd: ["sh", "-c", "echo debug tool broken; exit 1"] });
    await pub.commit({
      [`${APP}/docker-compose.yml`]: httpdCompose(`${upstream.host}/test/web:v4`, port, sidecar(`${upstream.host}/test/side:v1`) + profiled(broken)),
      [`${APP}/.env`]: "# the debug tools run on every device of this fleet\nCOMPOSE_PROFILES=debug\n",
    });
    await pub.publish(5);
    // Before: the update completed, the crashed debug container unseen.
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(51);
    expect(r.stderr).toContain("debug");
    expect(await httpGet(port)).toBe("hello v4");
    const st = await device.fioup("status");
    expect(st.json.current.name).toBe("amd64-linux-4");
    expect(st.json.badTargets).toEqual(["amd64-linux-5"]);
  }, 120_000);

  test("v6 with the debug service fixed is taken, and the app's state has the service its .env enables", async () => {
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(`${upstream.host}/test/web:v4`, port, sidecar(`${upstream.host}/test/side:v1`) + profiled(`${upstream.host}/test/side:v1`)) });
    await pub.publish(6);
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    const st = await device.fioup("status");
    expect(st.json.current.name).toBe("amd64-linux-6");
    expect(st.json.apps[APP].state).toBe("healthy");
    expect(st.json.apps[APP].services.map((x: { name: string }) => x.name).sort()).toEqual(["debug", "side", "web"]);
  }, 120_000);
});
