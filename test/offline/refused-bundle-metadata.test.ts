/**
 * A bundle the device refuses leaves the device's trusted metadata as it was. Bundle A (v2) is
 * exported on Monday; v3 is published for other devices; bundle B (v1, which the device runs) is
 * exported on Tuesday, so its metadata is newer than A's. The device, given B first, refuses it
 * (exit 3): had B's metadata become the device's, A would then be refused as a rollback (exit 30)
 * though its v2 is newer than what the device runs. The metadata of the bundle that is taken does
 * become the device's, as after an online check.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { httpGet, type Device } from "../fioup/_setup.ts";
import { trustedTimestampVersion } from "../../fioup/push.ts";
import { gatewayExport, goOffline, offlineRig, publishHttpd, type OfflineRig } from "./_setup.ts";

const APP = `rmeta${process.pid}`;
const REPO = "offline/refused-metadata";
const HWID = "amd64-linux";
let rig: OfflineRig;
let device: Device;
let port: number;
let bundles: string;

/** Publishes `version` answering `body`, for `hwid`. */
const publish = (version: number, body: string, hwid: string) => publishHttpd(rig, version, body, [hwid]);

/** The timestamp version of a bundle's metadata. */
const bundleTimestamp = async (dir: string): Promise<number> => (await Bun.file(join(dir, "tuf/timestamp.json")).json()).signed.version;

beforeAll(async () => {
  rig = await offlineRig({ app: APP, repo: REPO, body: "rmeta v1", tmp: "refused-metadata-" });
  ({ device, port, bundles } = rig);
}, 180_000);

afterAll(async () => {
  await rig?.stop();
});

describe("the metadata of a bundle the device refuses", () => {
  test("does not become the device's: a good bundle exported earlier still installs", async () => {
    const args = ["--insecure-registry", rig.upstream.host];
    await publish(2, "rmeta v2", HWID);
    const monday = join(bundles, "monday-v2");
    await gatewayExport(rig.gw, { target: 2, from: 1, hwid: HWID, out: monday, args });
    await publish(3, "rmeta v3", "kiosk-x86"); // for other devices: the gateway's metadata moves on
    const tuesday = join(bundles, "tuesday-v1");
    const log = await gatewayExport(rig.gw, { target: 1, hwid: HWID, out: tuesday, args });
    expect(await bundleTimestamp(tuesday), log).toBeGreaterThan(await bundleTimestamp(monday));
    await goOffline(device);
    const trusted = trustedTimestampVersion(device.sotaDir);
    const refused = await device.fioup("update", "--offline", tuesday);
    expect(refused.code, refused.stderr).toBe(3);
    expect(refused.stderr).toContain("the device runs it already");
    expect(trustedTimestampVersion(device.sotaDir)).toBe(trusted);
    // Before: refused as older than the metadata the device trusts (exit 30).
    const good = await device.fioup("update", "--offline", monday);
    expect(good.code, good.stderr).toBe(0);
    expect(await httpGet(port)).toBe("rmeta v2");
    expect(trustedTimestampVersion(device.sotaDir)).toBe(await bundleTimestamp(monday));
  }, 240_000);
});
