/**
 * A preloaded device's first boot, with real parts: apps published to a real
 * gateway, `preload` bakes two of three into an image (dir format), then with
 * no gateway and no registry reachable the early-start path (`fioup
 * early-start`, FIOUP_ROOT = the image) starts exactly the preloaded apps (or
 * those /var/lmp/default-apps names) from the image's store. Once the gateway
 * is back, the device registers, brings up the rest of its shortlist at once
 * (no new target needed), runs the preloaded target as its current one, and
 * its first update fetches only the blobs that changed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { GatewayHandle } from "../harness/gateway.ts";
import { Device, Publisher, asTestGateway, collectCli, httpGet, httpdCompose, httpdImage, pushImage, type DockerRegistryHandle } from "../fioup/_setup.ts";
import { factoryConfig, preload, preloadConfig, startTestGateway, threeApps, type ThreeApps } from "./_setup.ts";

// App names are unique per test file: the dockerd is shared with other test processes.
const A = "pl1a";
const B = "pl1b";
const C = "pl1c";
let rig: ThreeApps;
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
let pub: Publisher;
let device: Device;
let port: Record<string, number>;

beforeAll(async () => {
  rig = await threeApps([A, B, C]);
  ({ upstream, gw, pub, device, port } = rig);
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

const running = async () => Object.fromEntries(await Promise.all([A, B, C].map(async (n) => [n, await httpGet(port[n]!)])));

describe("a preloaded image on first boot", () => {
  test("preload writes the image for the shortlisted apps of the published target", async () => {
    const fc = await factoryConfig(preloadConfig(`${A},${B}`));
    // --out is the device's root: the test device boots straight from the image's tree.
    const r = await preload([
      "--factory-config", fc, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken,
      "--hwid", "amd64-linux", "--out", device.root, "--format", "dir", "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ target: "amd64-linux-1", apps: [A, B], format: "dir" });
    const saved = JSON.parse(readFileSync(join(device.sotaDir, "preload/target.json"), "utf8"));
    expect(saved.name).toBe("amd64-linux-1");
    expect(saved.apps).toEqual([A, B]);
    expect(existsSync(join(device.sotaDir, "tuf/root.json"))).toBe(true);
    expect(readFileSync(join(device.root, "usr/lib/sota/conf.d/50-preload.toml"), "utf8")).toContain(`compose_apps = "${A},${B}"`);
    expect(existsSync(join(device.root, "etc/systemd/system/multi-user.target.wants/compose-apps-early-start.service"))).toBe(true);
    // The store holds exactly the blobs preload reported.
    expect((await device.blobs()).size).toBe(r.json.blobs);
  }, 120_000);

  test("offline, early-start starts the preloaded apps and not the others", async () => {
    // The image's app and image references all point at the gateway's registry: with it
    // stopped, nothing the device could fetch from is reachable.
    await gw.stop();
    const r = await device.fioup("early-start");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.target).toBe("amd64-linux-1");
    expect(r.json.apps.map((a: { name: string; ok: boolean }) => [a.name, a.ok]).sort()).toEqual([[A, true], [B, true]]);
    const refs = readFileSync(join(device.root, "var/sota/preload/target.json"), "utf8").match(/"uri": "[^"]+"/g)!;
    expect(refs.every((u) => u.includes(`"${gw.host}/`))).toBe(true);
    expect(await running()).toEqual({ [A]: `${A} v1`, [B]: `${B} v1`, [C]: undefined });
  }, 120_000);

  test("offline, with /var/lmp/default-apps naming one app only that one starts", async () => {
    await device.cleanup([A, B, C]);
    mkdirSync(join(device.root, "var/lmp"), { recursive: true });
    writeFileSync(join(device.root, "var/lmp/default-apps"), `${B}\n`);
    const r = await device.fioup("early-start");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.apps).toEqual([{ name: B, ok: true }]);
    expect(await running()).toEqual({ [A]: undefined, [B]: `${B} v1`, [C]: undefined });
  }, 120_000);

  test("once registered, the device brings up the rest of its shortlist without a new target", async () => {
    // Early start ran B only (default-apps). The shortlist is preload's: A and B.
    expect(await running()).toEqual({ [A]: undefined, [B]: `${B} v1`, [C]: undefined });
    rig.gw = gw = await startTestGateway(gw.dataDir); // same URL, keys and targets
    await device.register(asTestGateway(gw));
    expect(await running()).toEqual({ [A]: `${A} v1`, [B]: `${B} v1`, [C]: undefined });
    // sota.toml holds device paths, not this test's temp dir: the device directory can be moved.
    const sota = readFileSync(join(device.sotaDir, "sota.toml"), "utf8");
    expect(sota).not.toContain(device.root);
    expect(Bun.TOML.parse(sota)).toMatchObject({ storage: { path: "/var/sota" }, import: { base_path: "/var/sota" } });
    const st = await device.fioup("status");
    expect(st.code, st.stderr).toBe(0);
    expect(st.json.targetApps.map((a: { name: string; status: string }) => [a.name, a.status])).toEqual([
      [A, "running"],
      [B, "running"],
      [C, "outside the shortlist"],
    ]);
    const none = await device.fioup("update");
    expect(none.code).toBe(3); // nothing newer: the apps came up without an update

    // A stopped by hand comes back at the next daemon start.
    await device.cleanup([A]);
    expect(await httpGet(port[A]!)).toBeUndefined();
    const d = await collectCli(device.spawn(["daemon", "--cycles", "1"]), "fioup daemon --cycles 1");
    expect(d.code, d.stderr).toBe(0);
    expect(d.stderr).toContain(`started ${A}`);
    expect(await running()).toEqual({ [A]: `${A} v1`, [B]: `${B} v1`, [C]: undefined });

    // The owner narrows the shortlist in /etc/sota/conf.d: the next daemon start stops B; widening it brings B back.
    const owner = join(device.root, "etc/sota/conf.d/90-owner.toml");
    mkdirSync(join(owner, ".."), { recursive: true });
    writeFileSync(owner, `[pacman]\ncompose_apps = "${A}"\n`);
    const narrowed = await collectCli(device.spawn(["daemon", "--cycles", "1"]), "fioup daemon --cycles 1");
    expect(narrowed.stderr).toContain(`stopped ${B}`);
    expect(await running()).toEqual({ [A]: `${A} v1`, [B]: undefined, [C]: undefined });
    const st2 = await device.fioup("status");
    expect(st2.json.targetApps.find((a: { name: string }) => a.name === B)).toMatchObject({ status: "outside the shortlist", containersRunning: false });
    rmSync(owner);
    await collectCli(device.spawn(["daemon", "--cycles", "1"]), "fioup daemon --cycles 1");
    expect(await running()).toEqual({ [A]: `${A} v1`, [B]: `${B} v1`, [C]: undefined });
  }, 180_000);

  test("once online, the device runs the preloaded target and its first update fetches only what changed", async () => {
    const skipped = await device.fioup("early-start");
    expect(skipped.json.skipped).toContain("registered");
    const check = await device.fioup("check");
    expect(check.json.current.name).toBe("amd64-linux-1");

    // v2 changes B's content only; the device runs the apps of its shortlist (A, B).
    const b2 = await pushImage(upstream, `test/${B}`, "v2", httpdImage(`${B} v2`));
    await pub.commit({ [`${B}/docker-compose.yml`]: httpdCompose(b2, port[B]!) });
    await pub.publish(2);
    const before = await device.blobs();
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    const added = [...(await device.blobs())].filter(([d]) => !before.has(d));
    const addedBytes = added.reduce((s, [, n]) => s + n, 0);
    expect(r.json.bytesFetched).toBe(addedBytes);
    // What changed: B's app manifest, bundle, bundle index, image manifest, config and its one small layer.
    expect(added.length).toBeLessThanOrEqual(6);
    expect(r.json.bytesFetched).toBeLessThan(Math.max(...before.values()));
    expect(await httpGet(port[A]!)).toBe(`${A} v1`);
    expect(await httpGet(port[B]!)).toBe(`${B} v2`);
  }, 120_000);
});
