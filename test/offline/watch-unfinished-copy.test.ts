/**
 * Watch mode and a bundle still being copied: `cp -r` may land index.json (and every blob)
 * before a metadata file is written in full. The TUF check then fails on a targets.json cut
 * short, which must not make the bundle final: once the copy completes, the watch, the stick
 * still in and index.json untouched, applies it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { until } from "../harness/tmp.ts";
import { httpGet, type Device } from "../fioup/_setup.ts";
import { bundleIndex, gatewayExport, goOffline, offlineRig, publishHttpd, type OfflineRig } from "./_setup.ts";

const APP = `wcopy${process.pid}`;
const REPO = "offline/unfinished-copy";
const HWID = "amd64-linux";
let rig: OfflineRig;
let device: Device;
let port: number;
let bundles: string;

beforeAll(async () => {
  rig = await offlineRig({ app: APP, repo: REPO, body: "copy v1", tmp: "watch-copy-" });
  ({ device, port, bundles } = rig);
  await publishHttpd(rig, 2, "copy v2");
  await gatewayExport(rig.gw, { target: 2, from: 1, hwid: HWID, out: join(bundles, "b2"), args: ["--insecure-registry", rig.upstream.host] });
  await goOffline(device);
}, 180_000);

afterAll(async () => {
  await rig?.stop();
});

describe("watching a stick while its bundle is copied", () => {
  test("a bundle whose targets.json is cut short is tried again, and applied once the copy completes", async () => {
    const stick = join(bundles, "stick");
    cpSync(join(bundles, "b2"), stick, { recursive: true });
    const targets = join(stick, "tuf", bundleIndex(stick).bundle.tuf.find((f: string) => /^\d+\.targets\.json$/.test(f)));
    const whole = readFileSync(targets);
    writeFileSync(targets, whole.subarray(0, whole.length >> 1)); // half written yet
    const watcher = device.spawn(["update", "--offline", stick, "--watch", "--interval", "1"]);
    let log = "";
    const reading = (async () => {
      for await (const chunk of watcher.stderr.pipeThrough(new TextDecoderStream())) log += chunk;
    })();
    try {
      await until("the watch to fail on the metadata cut short", () => log, (l) => l.includes("update failed"), 60_000, 100);
      writeFileSync(targets, whole); // the copy completes
      // Before: "this bundle fails so at every try: not trying it again", and the bundle never applied.
      await until("the watch to apply the completed bundle", () => log, (l) => l.includes(`updated to ${HWID}-2 (completed)`), 30_000, 100);
    } finally {
      watcher.kill("SIGTERM");
    }
    expect(await watcher.exited).toBe(0);
    await reading;
    expect(log).toContain(`trying again while the bundle stays in ${stick}`);
    expect(log).not.toContain("not trying it again");
    expect(await httpGet(port)).toBe("copy v2");
  }, 180_000);
});
