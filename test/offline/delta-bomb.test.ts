/**
 * A zstd patch bomb in place of a layer's delta: a frame of a few KB that decodes to hundreds of
 * MB of zeros with a 2 GiB window, announced in the descriptor as rebuilding that much. Neither
 * a bundle's index.json nor the gateway's answer is signed, so their `toSize` and `windowLog` must
 * not set what the rebuild may take: the device refuses a delta that claims more than the signed
 * layer unpacks to before it downloads a byte of it, and a frame asking a larger window than that
 * before it writes one. Watched while fioup runs: the blob store's ingest (where the layer is
 * rebuilt) and fioup's peak RSS. From a bundle the update fails as for any delta that does not
 * rebuild (exit 40, v1 keeps running); online the layer is fetched whole and the update completes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RegistryStorage } from "../../gateway/registry/storage.ts";
import { maxRebuiltBytes } from "../../lib/oci/delta.ts";
import { sha256 } from "../../lib/oci/digest.ts";
import type { BuiltImage } from "../harness/images.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { collectCli, httpGet, type CliResult, type Device } from "../fioup/_setup.ts";
import { realFilePaths, realFiles, realFilesImage } from "../deltas/_real-files.ts";
import { bundleIndex, dropIn, goOffline, OFFLINE_DROP_IN, offlineRig, realFilesV2, type OfflineRig } from "./_setup.ts";

const APP = `deltabomb${process.pid}`;
const HWID = "amd64-linux";
const MiB = 1 << 20;
/** What the bomb decodes to: far over what the layer may unpack to, and over the RSS bound below. */
const BOMB_BYTES = 400 * MiB;
/** fioup's peak RSS may not reach it (Bun alone and an update take about 100 MiB). */
const RSS_BOUND = 256 * MiB;
let rig: OfflineRig;
let device: Device;
let v2: BuiltImage;
let bomb: { bytes: Uint8Array; digest: string };

/** `fioup ...args` watched as it runs: the largest the store's ingest got, and fioup's peak RSS (VmHWM). */
async function watched(...args: string[]): Promise<CliResult & { ingestPeak: number; rssPeak: number }> {
  const p = device.spawn([...args, "--format", "json"]);
  let ingestPeak = 0;
  let rssPeak = 0;
  let done = false;
  const poll = (async () => {
    while (!done) {
      ingestPeak = Math.max(ingestPeak, await device.ingestBytes());
      try {
        const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.pid}/status`, "utf8"));
        if (hwm) rssPeak = Math.max(rssPeak, Number(hwm[1]) * 1024);
      } catch {
        // exited
      }
      await Bun.sleep(20);
    }
  })();
  const r = await collectCli(p, `fioup ${args.join(" ")}`, process.env.FIOUP_TEST_VERBOSE);
  done = true;
  await poll;
  console.error(`fioup ${args.join(" ")}: exit ${r.code}, ingest peak ${ingestPeak} B, RSS peak ${rssPeak} B`);
  return { ...r, ingestPeak, rssPeak };
}

/** Copies the delta bundle to `name` with the bomb as its delta, announced as `desc` says. */
function bombBundle(name: string, desc: { toSize: number; windowLog: number }): string {
  const dir = join(rig.bundles, name);
  cpSync(join(rig.bundles, "deltas"), dir, { recursive: true });
  const index = bundleIndex(dir);
  const delta = index.bundle.deltas[0];
  rmSync(join(dir, "blobs/sha256", delta.digest.slice(7)));
  writeFileSync(join(dir, "blobs/sha256", bomb.digest.slice(7)), bomb.bytes);
  index.bundle.bytes += bomb.bytes.byteLength - delta.size;
  Object.assign(delta, { digest: bomb.digest, size: bomb.bytes.byteLength, ...desc });
  writeFileSync(join(dir, "index.json"), JSON.stringify(index));
  return dir;
}

/** `fioup update --offline dir` fails saying `why`, within the bounds, and the device keeps v1. */
async function refused(dir: string, why: string): Promise<void> {
  const r = await watched("update", "--offline", dir);
  expect(r.code, r.stderr).toBe(40);
  expect(r.stderr).toContain(why);
  expect(r.ingestPeak).toBeLessThan(bound());
  expect(r.rssPeak).toBeLessThan(RSS_BOUND);
  expect(await httpGet(rig.port)).toBe("v1");
}

/** The most the changed layer may rebuild to, by what is signed: its blob's size and media type. */
const bound = () => {
  const layer = v2.layers.at(-1)!;
  return maxRebuiltBytes({ size: layer.gz.byteLength, mediaType: "application/vnd.oci.image.layer.v1.tar+gzip" });
};

beforeAll(async () => {
  const paths = realFilePaths(8_000_000);
  const files = realFiles(paths);
  rig = await offlineRig({ app: APP, repo: "test/delta-bomb", body: "v1", tmp: "delta-bomb-", image: realFilesImage(files, "v1") });
  device = rig.device;
  [{ image: v2 }, bomb] = await Promise.all([
    realFilesV2(rig, paths, files, HWID),
    (async () => {
      const file = join(await tempDir("delta-bomb-zst-"), "bomb.zst");
      const r = await run(["sh", "-c", `head -c ${BOMB_BYTES} /dev/zero | zstd -q -3 --long=31 -c > ${file}`]);
      if (r.code !== 0) throw new Error(`zstd: ${r.stderr}`);
      const bytes = await Bun.file(file).bytes();
      return { bytes, digest: sha256(bytes) };
    })(),
  ]);
  await goOffline(device);
}, 180_000);

afterAll(async () => {
  await rig?.stop();
});

describe("a zstd patch bomb as a layer's delta", () => {
  test("the bomb is a few KB, its layer a few MB, and what it decodes to far more than the layer may unpack to", () => {
    expect(bomb.bytes.byteLength).toBeLessThan(64 * 1024);
    expect(v2.layers.at(-1)!.gz.byteLength).toBeGreaterThan(MiB);
    expect(bound()).toBeLessThan(BOMB_BYTES / 2);
  });

  test("a bundle announcing the bomb's size and window is refused before the rebuild: no disk, no memory", async () => {
    const dir = bombBundle("bomb", { toSize: BOMB_BYTES, windowLog: 31 });
    await refused(dir, `the delta claims to rebuild ${BOMB_BYTES} bytes, more than the layer's ${bound()} (what its ${v2.layers.at(-1)!.gz.byteLength}-byte blob may unpack to)`);
  }, 120_000);

  test("a bundle announcing the real layer's size for the bomb: the 2 GiB window is refused before a byte is written", async () => {
    const index = bundleIndex(join(rig.bundles, "deltas")).bundle.deltas[0];
    const dir = bombBundle("bomb-small-claim", { toSize: index.toSize, windowLog: index.windowLog });
    await refused(dir, "Frame requires too much memory for decoding");
  }, 120_000);

  test("online, a gateway answering the bomb: the device refuses it without downloading it and fetches the layer whole", async () => {
    // Planted in the gateway's delta cache as the outcome of the pair, as a compromised gateway would answer.
    const good = bundleIndex(join(rig.bundles, "deltas")).bundle.deltas[0];
    const root = join(rig.gw.dataDir, "registry");
    const storage = new RegistryStorage(root);
    const file = join(await tempDir("delta-bomb-plant-"), "bomb.zst");
    writeFileSync(file, bomb.bytes);
    await storage.commitBlobFile(file, bomb.digest);
    await storage.linkBlob(good.repo, bomb.digest);
    writeFileSync(join(root, "deltas/blobs", bomb.digest.slice(7)), "");
    const planted = { ...good, digest: bomb.digest, size: bomb.bytes.byteLength, toSize: BOMB_BYTES, windowLog: 31 };
    delete planted.registry;
    delete planted.repo;
    delete planted.fromDiffId;
    writeFileSync(join(root, "deltas", `${good.from.slice(7)}-${good.to.slice(7)}.json`), JSON.stringify({ descriptor: planted }));
    dropIn(device, OFFLINE_DROP_IN, undefined);

    const r = await watched("update");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`Layer ${good.to}: no delta (the delta claims to rebuild ${BOMB_BYTES} bytes`);
    expect(r.stderr).toContain("fetching it whole");
    expect(r.ingestPeak).toBeLessThan(bound());
    expect(r.rssPeak).toBeLessThan(RSS_BOUND);
    expect(await httpGet(rig.port)).toBe("v2");
  }, 120_000);
});
