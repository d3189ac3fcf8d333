/**
 * Bundles a device refuses, and how: each refusal says why in the device's terms, takes nothing
 * from the bundle that would harm a later good one, and is final in watch mode. A bundle
 * exported for another hardware id is refused before its metadata is trusted, so a good bundle
 * exported earlier still installs; a bundle from another gateway (another factory's root) is
 * said as such; a bundle of a version a rollout holds back from the device names the rollout
 * (and export warns); watch mode tries a bundle with a rotted blob once, not again and again;
 * a folder holding the bundle one level down is named in one-shot mode too; an interrupted
 * update is not resumed from another gateway's bundle that happens to name the same target.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sleep, until } from "../harness/tmp.ts";
import { startTestGateway, Device, httpGet, httpdCompose, httpdImage, Publisher, pushImage, type TestGateway } from "../fioup/_setup.ts";
import { bundleIndex, dropIn, gatewayExport, goOffline, OFFLINE_DROP_IN, offlineRig, publishHttpd, rottedCopy, type OfflineRig } from "./_setup.ts";

const APP = `brefuse${process.pid}`;
const REPO = "offline/refusals";
const HWID = "amd64-linux";
const KIOSK = "kiosk-x86";
let rig: OfflineRig;
let device: Device;
let port: number;
let bundles: string;
let other: TestGateway | undefined;

/** Publishes `version` with an image answering `body` (for `hwids`, default the rig's). */
const publish = (version: number, body: string, hwids: string[] = []) => publishHttpd(rig, version, body, hwids);

const exportArgs = () => ["--insecure-registry", rig.upstream.host];

/** The device's failed update records. */
function failedUpdates(): number {
  const db = new Database(join(device.sotaDir, "fioup.db"), { readonly: true });
  try {
    return db.query<{ n: number }, []>("SELECT count(*) AS n FROM updates WHERE state = 'failed'").get()!.n;
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  rig = await offlineRig({ app: APP, repo: REPO, body: "refuse v1", tmp: "bundle-refusals-" });
  ({ device, port, bundles } = rig);
  await publish(2, "refuse v2");
  await gatewayExport(rig.gw, { target: 2, from: 1, hwid: HWID, out: join(bundles, "b2"), args: exportArgs() });
}, 180_000);

afterAll(async () => {
  await other?.stop();
  await rig?.stop();
});

describe("bundles a device refuses", () => {
  test("a bundle for another hardware id is refused before its metadata is taken: a good bundle exported earlier still installs", async () => {
    // Version 3 for the kiosks too: its metadata is newer than b2's.
    await publish(3, "refuse v3", [HWID, KIOSK]);
    const log = await gatewayExport(rig.gw, { target: 3, hwid: KIOSK, out: join(bundles, "b3kiosk"), args: [...exportArgs(), "--platform", "linux/amd64"] });
    expect(bundleIndex(join(bundles, "b3kiosk")).bundle.hwid, log).toBe(KIOSK);
    await goOffline(device);
    const refused = await device.fioup("update", "--offline", join(bundles, "b3kiosk"));
    expect(refused.code, refused.stderr).toBe(22);
    const good = await device.fioup("update", "--offline", join(bundles, "b2"));
    expect(good.code, good.stderr).toBe(0); // not "older than the trusted version"
    expect(refused.stderr).toContain(`it was exported for hardware id ${KIOSK} (its index.json), this device is ${HWID}; nothing of it was taken`);
    expect(await httpGet(port)).toBe("refuse v2");
  }, 180_000);

  test("a bundle from another gateway is refused as such, not as a signature that does not verify", async () => {
    other = await startTestGateway();
    const pub = await Publisher.create(other, rig.upstream, { [`${APP}/docker-compose.yml`]: httpdCompose(await pushImage(rig.upstream, REPO, "v9", httpdImage("refuse v9")), port) });
    await pub.publish(9);
    await gatewayExport(other, { target: 9, hwid: HWID, out: join(bundles, "b9other"), args: exportArgs() });
    const r = await device.fioup("update", "--offline", join(bundles, "b9other"));
    expect(r.code, r.stderr).toBe(30);
    expect(r.stderr).toContain("it comes from another gateway (another factory): its tuf/1.root.json is not the root version 1 this device trusts");
    expect(r.stderr).not.toContain("signed by");
    expect(await httpGet(port)).toBe("refuse v2");
  }, 180_000);

  test("a bundle of a version a rollout holds back from the device says so, and export warns", async () => {
    dropIn(device, OFFLINE_DROP_IN, undefined); // online for a while
    // A rollout of version 4 to another device's tag: this device is outside it.
    const canary = await Device.create(rig.dockerd);
    try {
      await canary.register(rig.gw, ["--tag", "canary"]);
      await rig.gw.admin("/admin/rollouts", { method: "POST", body: JSON.stringify({ target: "4", tag: "canary", waves: [100] }) });
      await publish(4, "refuse v4");
      const check = await device.fioup("check"); // the device now trusts its own view, without version 4
      expect(check.code, check.stderr).not.toBe(30);
      const log = await gatewayExport(rig.gw, { target: 4, from: 2, hwid: HWID, out: join(bundles, "b4"), args: exportArgs() });
      expect(log).toMatch(/warning: rollout \S+ \(running, tag canary, wave 1 of 1\) holds version 4 back from the devices it has not released it to/);
      await goOffline(device);
      const r = await device.fioup("update", "--offline", join(bundles, "b4"));
      expect(r.code, r.stderr).toBe(22);
      expect(r.stderr).toContain(`the device's own signed view of the targets (from its gateway`);
      expect(r.stderr).toContain(`does not offer ${HWID}-4, though the bundle's tuf/`);
      expect(r.stderr).toContain("a rollout on the gateway holds that version back from this device");
      expect(await httpGet(port)).toBe("refuse v2");
    } finally {
      await canary.cleanup([]).catch(() => undefined);
    }
  }, 180_000);

  test("watch mode tries a bundle with a rotted blob once, not again and again", async () => {
    await gatewayExport(rig.gw, { target: 3, from: 2, hwid: HWID, out: join(bundles, "b3"), args: exportArgs() });
    const { dir, digest } = rottedCopy(join(bundles, "b3"), join(bundles, "b3-rotted"));
    const before = failedUpdates();
    const watcher = device.spawn(["update", "--offline", dir, "--watch", "--interval", "1"]);
    let log = "";
    const stderr = (async () => { for await (const chunk of watcher.stderr.pipeThrough(new TextDecoderStream())) log += chunk; })();
    try {
      await until("the watch to refuse the rotted blob", () => log, (l) => l.includes("update failed"), 60_000, 100);
      await sleep(7000); // retries would come after 2 and 4 s
    } finally {
      watcher.kill("SIGTERM");
    }
    expect(await watcher.exited).toBe(0);
    await stderr;
    expect(log).toContain(digest);
    expect(log).toContain(`this bundle fails so at every try: not trying it again (a new bundle in ${dir} is tried)`);
    expect(log).not.toContain("trying again while");
    expect(failedUpdates() - before, log).toBe(1);
    expect(await httpGet(port)).toBe("refuse v2");
  }, 120_000);

  test("a folder whose bundle is one level down is refused naming that folder, as watch mode names it", async () => {
    const mnt = join(bundles, "mnt1");
    mkdirSync(join(mnt, "bundle"), { recursive: true });
    cpSync(join(bundles, "b3"), join(mnt, "bundle"), { recursive: true });
    const r = await device.fioup("update", "--offline", mnt);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`no index.json (not a bundle, or its copy is unfinished); ${join(mnt, "bundle")} holds one: give that folder to --offline`);
  }, 60_000);

  test("an interrupted update is not resumed from another gateway's bundle of the same target name: refused as such, and ours finishes it", async () => {
    await publish(5, "refuse v5");
    await gatewayExport(rig.gw, { target: 5, from: 2, hwid: HWID, out: join(bundles, "b5"), args: exportArgs() });
    const cut = device.spawn(["update", "--offline", join(bundles, "b5")], { FIOUP_FAULT: "state:fetching" });
    expect(await cut.exited).toBe(137); // killed with an update to ${HWID}-5 in progress
    other ??= await startTestGateway();
    const pub = await Publisher.create(other, rig.upstream, { [`${APP}/docker-compose.yml`]: httpdCompose(await pushImage(rig.upstream, REPO, "o5", httpdImage("other v5")), port) });
    await pub.publish(5);
    await gatewayExport(other, { target: 5, hwid: HWID, out: join(bundles, "b5other"), args: exportArgs() });
    const r = await device.fioup("update", "--offline", join(bundles, "b5other"));
    expect(r.code, r.stderr).toBe(30);
    expect(r.stderr).toContain("it comes from another gateway (another factory)");
    const ours = await device.fioup("update", "--offline", join(bundles, "b5"));
    expect(ours.code, ours.stderr).toBe(0);
    expect(await httpGet(port)).toBe("refuse v5");
  }, 240_000);
});
