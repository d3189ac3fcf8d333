/**
 * Offline bundles end to end: `gateway export` on the gateway, `fioup update --offline` on a
 * device whose gateway URL points at a closed loopback port (no route to the gateway). The
 * bundle updates the device, a failing app from a bundle rolls back, a tampered blob and
 * expired metadata are refused (expired metadata is taken within a configured grace), and the
 * queued events reach the gateway once the device can reach it again.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { servedBytes, startGateway } from "../harness/gateway.ts";
import { sleep, tempDir, until } from "../harness/tmp.ts";
import { factoryConfig, preload, preloadConfig } from "../preload/_setup.ts";
import {
  Device, asTestGateway, deviceOnV1, freePort, httpGet, httpdCompose, httpdImage, pushImage, startDockerRegistry, startDockerd, startTestGateway,
  type DockerRegistryHandle, type DockerdHandle, type Publisher, type TestGateway,
} from "../fioup/_setup.ts";
import { dropIn as setDropIn, gatewayExport, OFFLINE_DROP_IN, offlineToml } from "./_setup.ts";

const APP = `offline${process.pid}`;
const HWID = "amd64-linux";
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let port: number;
let uuid: string;
let bundles: string;
let servedBefore: Awaited<ReturnType<typeof servedBytes>>;

/** `gateway export` on the gateway host into the bundles dir. */
async function exportBundle(target: number, from: number | undefined, name: string): Promise<string> {
  const out = join(bundles, name);
  await gatewayExport(gw, { target, ...(from ? { from } : {}), hwid: HWID, out, args: ["--insecure-registry", upstream.host] });
  return out;
}

/** An owner drop-in (later files win): the device's gateway URL, or an expiry grace. */
const dropIn = (name: string, toml: string | undefined) => setDropIn(device, name, toml);

/** Registry bytes the gateway served to the device (its own count). */
const served = () =>
  servedBytes({ adminFetch: (p, i) => fetch(`${gw.url}${p}`, { ...i, headers: { authorization: `Bearer ${gw.adminToken}` }, tls: { ca: readFileSync(join(gw.dataDir, "pki/ca.pem"), "utf8") } } as RequestInit) }, `device:${uuid}`);

const publishApp = async (version: number, image: string) => {
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(image, port) });
  await pub.publish(version);
};

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  port = await freePort();
  device = await Device.create(dockerd);
  bundles = await tempDir("offline-bundles-");
  ({ pub, uuid } = await deviceOnV1({ gw, upstream, device, app: APP, repo: "offline/web", port, body: "offline v1" }));
  const [v2, v3] = await Promise.all([
    pushImage(upstream, "offline/web", "v2", httpdImage("offline v2")),
    pushImage(upstream, "offline/web", "v3", { cmd: ["sh", "-c", "exit 3"], layers: [{ "/www/index.html": "v3" }] }),
  ]);
  await publishApp(2, v2);
  await publishApp(3, v3);
  await Promise.all([exportBundle(2, 1, "v2"), exportBundle(3, 2, "v3"), exportBundle(2, undefined, "v2-full")]);
  // The root a factory holds (preload needs it: a bundle cannot vouch for its own first root).
  writeFileSync(join(bundles, "root.json"), await (await fetch(`${gw.url}/repo/1.root.json`, { headers: { authorization: `Bearer ${gw.adminToken}` }, tls: { ca: readFileSync(join(gw.dataDir, "pki/ca.pem"), "utf8") } } as RequestInit)).text());
  // From here the device has no route to the gateway: its URL is a loopback port nobody listens on.
  dropIn(OFFLINE_DROP_IN, offlineToml(await freePort()));
  servedBefore = await served();
}, 120_000);

afterAll(async () => {
  await device?.cleanup([APP]).catch(() => {});
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

describe("offline bundles", () => {
  test("a bundle with a tampered blob is refused and the device keeps running v1", async () => {
    const bad = join(bundles, "v2-tampered");
    cpSync(join(bundles, "v2"), bad, { recursive: true });
    const index = JSON.parse(readFileSync(join(bad, "index.json"), "utf8"));
    const layer = index.bundle.blobs.filter((b: { kind: string }) => b.kind === "layer").sort((a: { size: number }, b: { size: number }) => b.size - a.size)[0];
    const file = join(bad, "blobs/sha256", layer.digest.slice(7));
    const bytes = readFileSync(file);
    bytes[bytes.length >> 1]! ^= 0xff; // same size, other bytes
    writeFileSync(file, bytes);
    const unfinished = join(bundles, "unfinished");
    mkdirSync(unfinished); // a copy cut short before its index.json
    expect((await device.fioup("update", "--offline", unfinished)).code).toBe(2);
    const r = await device.fioup("update", "--offline", bad);
    expect(r.code, r.stderr).toBe(40); // fetch failed: digest mismatch
    expect(r.stderr).toContain(layer.digest);
    expect((await device.blobs()).has(layer.digest)).toBe(false);
    expect(await httpGet(port)).toBe("offline v1");
    expect((await device.fioup("status")).json.current.name).toBe(`${HWID}-1`);
  }, 60_000);

  test("a Docker engine that cannot be reached fails the update without marking the target bad", async () => {
    // A device whose dockerd is not up yet (a slow boot): the device's trouble, not the target's.
    dropIn("90-no-docker.toml", `[fioup]\ndocker_host = "unix://${join(bundles, "no-docker.sock")}"\n`);
    try {
      const r = await device.fioup("update", "--offline", join(bundles, "v2"));
      expect(r.code, r.stderr).not.toBe(0);
      expect(r.stderr).toContain("Cannot reach the Docker Engine");
      expect((await device.fioup("status")).json.badTargets).toEqual([]);
    } finally {
      dropIn("90-no-docker.toml", undefined);
    }
    expect(await httpGet(port)).toBe("offline v1");
  }, 60_000);

  test("a bundle made on the gateway updates a device that cannot reach the gateway", async () => {
    // What the bundle holds is the bundle: no empty work folder of the store that copied it.
    const empty = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).flatMap((e) => {
        const sub = join(dir, e.name);
        return readdirSync(sub).length ? empty(sub) : [sub];
      });
    expect(empty(join(bundles, "v2"))).toEqual([]);
    const r = await device.fioup("update", "--offline", join(bundles, "v2"));
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.state).toBe("completed");
    expect(r.json.toTarget).toBe(`${HWID}-2`);
    expect(await httpGet(port)).toBe("offline v2");
    // It is offline: the events wait, and the warning says where they were to go and why they did not.
    expect(r.stderr).toMatch(/cannot report to the gateway: Cannot POST https:\/\/\S+\/events: connection refused \(is it running at that address\?\)/);
    const again = await device.fioup("update", "--offline", join(bundles, "v2"));
    expect(again.code).toBe(3); // nothing newer in that bundle
  }, 60_000);

  test("an app from a bundle that fails to start is rolled back and its target marked bad", async () => {
    const r = await device.fioup("update", "--offline", join(bundles, "v3"));
    expect(r.code, r.stderr).toBe(51);
    expect(await httpGet(port)).toBe("offline v2");
    const st = await device.fioup("status");
    expect(st.json.current.name).toBe(`${HWID}-2`);
    expect(st.json.badTargets).toEqual([`${HWID}-3`]);
    expect(st.json.queuedEvents).toBeGreaterThan(0);
    // Not one byte came from the gateway's registry while the device was offline.
    expect(await served()).toEqual(servedBefore);
  }, 90_000);

  test("expired metadata is refused, and accepted within a configured grace (from a watched mount point)", async () => {
    // A gateway whose timestamps live 3 s: the bundle's copy is stale soon after the export.
    await gw.stop();
    gw = asTestGateway(await startGateway({ dataDir: gw.dataDir, args: ["--polling-seconds", "1", "--tuf-expiry", "timestamp=3s"] }));
    // Same data dir, port and admin token: the publisher and the device reach it as before.
    await publishApp(4, await pushImage(upstream, "offline/web", "v4", httpdImage("offline v4")));
    const dir = await exportBundle(4, 2, "v4");
    const expiresAt: string = JSON.parse(readFileSync(join(dir, "tuf/timestamp.json"), "utf8")).signed.expires;
    const expires = Date.parse(expiresAt);
    await sleep(Math.max(0, expires - Date.now()) + 250);

    const stale = await device.fioup("update", "--offline", dir);
    expect(stale.code, stale.stderr).toBe(30); // TUF verification failed
    // When it expired, and the two ways forward.
    expect(stale.stderr).toMatch(new RegExp(`Cannot verify TUF metadata timestamp\\.json: the bundle's copy expired at ${expiresAt.replaceAll(".", "\\.")} by this machine's clock, which reads \\d{4}-[\\d-]+T[\\d:]+Z: `));
    expect(stale.stderr).toContain(`: if that is not the time, set the time (enable NTP: timedatectl set-ntp true); else export a new bundle (gateway export), or let this device take metadata that expired a while ago with fioup.offline_expiry_grace_seconds`);
    expect(await httpGet(port)).toBe("offline v2");

    // With a grace, and through watch mode: the bundle is copied onto a watched "USB stick" mount point.
    dropIn("91-grace.toml", `[fioup]\noffline_expiry_grace_seconds = 3600\n`);
    const stick = join(bundles, "usb");
    mkdirSync(stick);
    const watcher = device.spawn(["update", "--offline", stick, "--watch", "--interval", "1"]);
    try {
      await sleep(1500);
      cpSync(dir, stick, { recursive: true });
      // Until the update is done, steps and all (the app answers before the start step ends).
      await until("the update from the watched mount point to complete", () => device.updateState()?.state, (state) => state === "completed", 60_000, 100);
      expect(await httpGet(port)).toBe("offline v4");
    } finally {
      watcher.kill("SIGTERM");
    }
    expect(await watcher.exited).toBe(0);
    const log = await new Response(watcher.stderr).text();
    expect(log).toContain(`updated to ${HWID}-4 (completed)`);
    // The empty stick was said to hold no bundle, once, not in silence and not every second.
    expect(log.split(`no bundle in ${stick} yet (no index.json there); watching on`).length - 1).toBe(1);
    expect((await device.fioup("status")).json.current.name).toBe(`${HWID}-4`);
    dropIn("91-grace.toml", undefined);
  }, 90_000);

  test("preload takes a full bundle as its source, and refuses one made --from a version", async () => {
    const fc = await factoryConfig(preloadConfig(APP));
    const args = (bundle: string, out: string) =>
      ["--factory-config", fc, "--ref", "refs/heads/master", "--hwid", HWID, "--bundle", join(bundles, bundle), "--root", join(bundles, "root.json"), "--out", join(bundles, out), "--json"];
    const r = await preload(args("v2-full", "image"));
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ target: `${HWID}-2`, apps: [APP] });
    const index = JSON.parse(readFileSync(join(bundles, "v2-full/index.json"), "utf8"));
    expect(r.json.blobs).toBe(index.bundle.blobs.length);
    const target = JSON.parse(readFileSync(join(bundles, "image/var/sota/preload/target.json"), "utf8"));
    expect(target.name).toBe(`${HWID}-2`);
    const partial = await preload(args("v2", "image-partial"));
    expect(partial.code).toBe(21);
    expect(partial.stderr).toContain("--from 1");
  }, 60_000);

  test("back online, the offline updates and the rollback reach the gateway", async () => {
    dropIn(OFFLINE_DROP_IN, undefined);
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(3); // already on v4; the queue is flushed on the way
    expect((await device.fioup("status")).json.queuedEvents).toBe(0);
    type Updates = { updates: { targetName: string; success?: boolean; events: { eventType: { id: string }; event: { details?: unknown } }[] }[] };
    const { updates } = await gw.admin<Updates>(`/admin/devices/${uuid}/updates`);
    const v2 = updates.find((u) => u.targetName === `${HWID}-2` && u.success === true);
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
    // The server can tell an offline update from one it served.
    expect(JSON.parse(String(v2?.events[0]?.event.details))).toMatchObject({ source: "offline-bundle" });
    const v3 = updates.find((u) => u.targetName === `${HWID}-3`);
    expect(v3?.success).toBe(false);
    const failed = v3?.events.find((e) => e.eventType.id === "EcuInstallationCompleted");
    expect(JSON.parse(String(failed?.event.details))).toMatchObject({ phase: "start", rolledBackTo: `${HWID}-2`, rollbackOk: true });
    expect(updates.find((u) => u.targetName === `${HWID}-4`)?.success).toBe(true);
    // The tampered bundle's attempt is there too, as a failed download.
    expect(updates.some((u) => u.targetName === `${HWID}-2` && u.success === false)).toBe(true);
  }, 60_000);
});
