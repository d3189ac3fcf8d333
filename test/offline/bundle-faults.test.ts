/**
 * Offline bundles that fail on the device's side. A delta bundle whose rebuilt layer does not fit
 * the blob store (on a small tmpfs this file mounts and unmounts; root, as the harness runs) is
 * refused before the first byte, counting the delta and the layer it rebuilds, and said as a
 * full disk (its other data filling it). A bundle with one blob rotted on the stick (same size, one byte flipped) is refused
 * every time it is given, and never marks its target bad, for the fault is the carrier's and a
 * good bundle of that target must still install: here through watch mode while the store is
 * full, which tries the bundle again (said once) and installs it once there is room.
 * The app's image has a ~20 MB layer of real files; version 2 changes one 1 MB file, so the
 * `--from 1` bundle carries that layer as a delta and the `--no-deltas` one carries it whole.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run, sleep, until } from "../harness/tmp.ts";
import { httpGet, type Device } from "../fioup/_setup.ts";
import { realFilePaths, realFiles, realFilesImage } from "../deltas/_real-files.ts";
import { bundleIndex, dropIn, goOffline, offlineRig, realFilesV2, rottedCopy, type OfflineRig } from "./_setup.ts";

const APP = `bfault${process.pid}`;
const REPO = "test/bundle-faults";
const HWID = "amd64-linux";
let rig: OfflineRig;
let device: Device;
let port: number;
let bundles: string;

beforeAll(async () => {
  const paths = realFilePaths(20_000_000);
  const files = realFiles(paths);
  rig = await offlineRig({ app: APP, repo: REPO, body: "v1", tmp: "bundle-faults-", image: realFilesImage(files, "v1") });
  ({ device, port, bundles } = rig);
  await realFilesV2(rig, paths, files, HWID);
  await goOffline(device);
}, 180_000);

afterAll(async () => {
  await rig?.stop();
});

/** A copy of bundle `name` whose largest layer has one byte flipped (same size): bit rot on a stick. */
const rotted = (name: string) => rottedCopy(join(bundles, name), join(bundles, `${name}-rotted`));

/** The registry size of `layer`, read from the manifests `dir` carries. */
function layerSize(dir: string, layer: string): number {
  for (const f of readdirSync(join(dir, "blobs/sha256"))) {
    try {
      const m = JSON.parse(readFileSync(join(dir, "blobs/sha256", f), "utf8"));
      const l = m.layers?.find((x: { digest: string }) => x.digest === layer);
      if (l) return l.size;
    } catch {
      // not a manifest
    }
  }
  throw new Error(`no manifest in ${dir} names ${layer}`);
}

/**
 * Runs `fn` with the device's blob store on a 512 MiB tmpfs holding what it holds now, and a
 * file of something else filling all but `room` bytes of it (the storage watermark at 100%, so
 * the room is all there is); `free()` removes that file. The store is put back afterwards.
 */
async function withFullStore(room: number, fn: (free: () => void) => Promise<void>): Promise<void> {
  const store = device.storeDir;
  const kept = `${store}.kept`;
  const filler = join(store, "other-data");
  renameSync(store, kept);
  mkdirSync(store);
  expect((await run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", store])).code).toBe(0);
  try {
    cpSync(kept, store, { recursive: true });
    const fs = statfsSync(store);
    expect((await run(["fallocate", "-l", String(fs.bavail * fs.bsize - room), filler])).code).toBe(0);
    dropIn(device, "91-watermark.toml", "[pacman]\nstorage_watermark = 100\n");
    await fn(() => rmSync(filler));
  } finally {
    dropIn(device, "91-watermark.toml", undefined);
    await run(["umount", store]);
    rmSync(store, { recursive: true, force: true });
    renameSync(kept, store);
  }
}

describe("faulty offline bundles", () => {
  test("a delta bundle whose rebuilt layer does not fit the blob store is refused before the first byte, as a full disk", async () => {
    const dir = join(bundles, "deltas");
    const delta = bundleIndex(dir).bundle.deltas[0];
    const whole = layerSize(dir, delta.to);
    // Room for the layer compressed and the delta, not for the layer rebuilt.
    const room = whole + delta.size + (1 << 20);
    expect(delta.size + delta.toSize).toBeGreaterThan(room); // else this test proves nothing
    await withFullStore(room, async () => {
      const r = await device.fioup("update", "--offline", dir);
      expect(r.code, r.stderr).toBe(41); // no space
      expect(r.stderr).toContain("Not enough space for the update in the blob store");
      expect(r.stderr).not.toContain("fetching it whole");
      expect(r.stderr).not.toContain("memory");
      expect((await device.blobs()).has(delta.digest)).toBe(false); // not one byte
      expect((await device.fioup("status")).json.badTargets).toEqual([]);
      expect(await httpGet(port)).toBe("v1");
    });
  }, 120_000);

  test("a bundle with a rotted blob is refused each time without marking its target bad", async () => {
    const bad = rotted("whole");
    for (let i = 0; i < 2; i++) {
      const r = await device.fioup("update", "--offline", bad.dir);
      expect(r.code, r.stderr).toBe(40); // the fetch failed: digest mismatch
      expect(r.stderr).toContain(bad.digest);
      expect(r.stderr).not.toContain("Marked");
    }
    expect((await device.fioup("status")).json.badTargets).toEqual([]);
    expect(await httpGet(port)).toBe("v1");
  }, 120_000);

  test("a good bundle of that target, watched while the blob store is full, installs once there is room, the stick left in", async () => {
    const dir = join(bundles, "deltas");
    await withFullStore(1 << 20, async (free) => {
      const watcher = device.spawn(["update", "--offline", dir, "--watch", "--interval", "1"]);
      let log = "";
      const stderr = (async () => { for await (const chunk of watcher.stderr.pipeThrough(new TextDecoderStream())) log += chunk; })();
      try {
        await until("the watch to say the bundle does not fit", () => log, (l) => l.includes("Not enough space"), 60_000, 100);
        expect(log).toContain(`trying again while the bundle stays in ${dir}`);
        await sleep(2500); // a retry or two, still without room: said once
        expect(log.split("Not enough space").length - 1, log).toBe(1);
        expect(await httpGet(port)).toBe("v1");
        free(); // the operator frees space; nobody touches the stick
        await until("the retried bundle to install", () => device.updateState()?.state, (st) => st === "completed", 60_000, 100);
        expect(await httpGet(port)).toBe("v2");
      } finally {
        watcher.kill("SIGTERM");
      }
      expect(await watcher.exited).toBe(0);
      await stderr;
      expect(log).toContain(`updated to ${HWID}-2 (completed)`);
      expect((await device.fioup("status")).json.badTargets).toEqual([]);
    });
  }, 180_000);
});
