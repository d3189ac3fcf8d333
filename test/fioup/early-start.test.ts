/**
 * A device preloaded by hand (a store copied from a device that fetched v1,
 * the preloaded target written with lib/device, no preload config, so no
 * shortlist): `fioup early-start` starts only the apps of /var/lmp/default-apps
 * offline, and at the next boot leaves the installed ones as they are (their containers
 * bind-mount their dirs); registration brings up every app of the target (no shortlist = all);
 * the preloaded target is the current one and the first update fetches only
 * what changed. test/preload/first-boot.test.ts does the same with a real
 * preload image and a shortlist.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TargetEntry } from "../../lib/api/index.ts";
import { preloadedTargetPath } from "../../lib/device/paths.ts";
import { writePreloadedTarget } from "../../lib/device/preloaded-target.ts";
import {
  Device, httpdCompose, httpdImage, httpGet, Publisher, pushImage, startTwoAppFleet,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway, type TwoAppFleet,
} from "./_setup.ts";

const A = "fioupesa";
const B = "fioupesb";
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let pub: Publisher;
let portA: number;
let portB: number;
let preloaded: Device;

let fleet: TwoAppFleet;

beforeAll(async () => {
  fleet = await startTwoAppFleet([{ name: A, repo: "test/esa", body: "esa v1" }, { name: B, repo: "test/esb", body: "esb v1" }]);
  ({ dockerd, upstream, gw, pub } = fleet);
  [portA, portB] = fleet.ports;
  // The "factory": a device that fetched v1; its store becomes the preloaded one.
  const factory = await Device.create(dockerd);
  await factory.register(gw);
  const f = await factory.fioup("fetch");
  if (f.code !== 0) throw new Error(`fetch failed: ${f.stderr}`);
  preloaded = await Device.create(dockerd);
  cpSync(join(factory.storeDir, "blobs"), join(preloaded.storeDir, "blobs"), { recursive: true });
  const { targets } = await gw.admin<{ targets: Record<string, TargetEntry> }>("/admin/targets");
  await writePreloadedTarget(preloadedTargetPath(preloaded.sotaDir), { name: "amd64-linux-1", entry: targets["amd64-linux-1"]! });
  mkdirSync(join(preloaded.root, "var/lmp"), { recursive: true });
  writeFileSync(join(preloaded.root, "var/lmp/default-apps"), `${A}\n`);
}, 120_000);

afterAll(async () => {
  await preloaded?.cleanup([A, B]).catch(() => {});
  await fleet?.stop();
});

describe("fioup early-start and preload", () => {
  test("early-start runs the default apps of the preloaded target, offline", async () => {
    const r = await preloaded.fioup("early-start");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.target).toBe("amd64-linux-1");
    expect(r.json.apps).toEqual([{ name: A, ok: true }]);
    expect(await httpGet(portA)).toBe("esa v1");
    expect(await httpGet(portB)).toBeUndefined();
  }, 120_000);

  test("an app /var/lmp/default-apps names that is not preloaded is said, by name, with the apps that are; the others still start", async () => {
    const file = join(preloaded.root, "var/lmp/default-apps");
    writeFileSync(file, `${A}, ${A}x\n`);
    // A second boot: the app installed by the first runs, its containers bind-mounting its dir
    // (a file its service wrote there stands for its data). It is not installed again under them.
    const appDir = join(preloaded.root, "var/sota/compose-apps", A);
    const before = statSync(appDir).ino;
    writeFileSync(join(appDir, "written-by-the-app"), "data");
    try {
      const r = await preloaded.fioup("early-start");
      expect(statSync(appDir).ino).toBe(before);
      expect(existsSync(join(appDir, "written-by-the-app"))).toBe(true);
      expect(r.code, r.stderr).toBe(51);
      expect(r.json.apps).toEqual([
        { name: `${A}x`, ok: false, error: `/var/lmp/default-apps names it, but it is unknown: target amd64-linux-1 has no app of that name; preloaded and shortlisted: ${A}, ${B}` },
        { name: A, ok: true },
      ]);
      expect(await httpGet(portA)).toBe("esa v1");
    } finally {
      writeFileSync(file, `${A}\n`);
      rmSync(join(appDir, "written-by-the-app"), { force: true });
    }
  }, 120_000);

  test("after registration every app of the preloaded target runs (no shortlist), and the first update fetches only what changed", async () => {
    await preloaded.register(gw);
    expect(await httpGet(portA)).toBe("esa v1");
    expect(await httpGet(portB)).toBe("esb v1"); // brought up by registration, without a new target
    const skipped = await preloaded.fioup("early-start");
    expect(skipped.json.skipped).toContain("registered");

    const check = await preloaded.fioup("check");
    expect(check.json.current.name).toBe("amd64-linux-1");
    expect(check.code).toBe(3);

    const b2 = await pushImage(upstream, "test/esb", "v2", httpdImage("esb v2"));
    await pub.commit({ [`${B}/docker-compose.yml`]: httpdCompose(b2, portB) });
    await pub.publish(2);
    const before = await preloaded.blobs();
    const r = await preloaded.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    const added = [...(await preloaded.blobs())].filter(([d]) => !before.has(d)).reduce((s, [, n]) => s + n, 0);
    expect(r.json.bytesFetched).toBe(added);
    expect(r.json.bytesFetched).toBeLessThan(Math.max(...before.values()));
    expect(await httpGet(portA)).toBe("esa v1");
    expect(await httpGet(portB)).toBe("esb v2");
  }, 120_000);
});
