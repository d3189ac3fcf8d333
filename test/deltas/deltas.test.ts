/**
 * Image deltas end to end: an app whose image has a ~50 MB layer of real files (shared
 * libraries; ~25 MB gzipped at level 1, so a 1 MB delta is well under a tenth of it, and the whole-layer
 * fallback is large enough to tell apart from the delta). Version 2 changes one 1 MB file: the device fetches a delta for that layer
 * (counted by the gateway's registry apart from full blobs), rebuilds it, docker loads it and
 * runs the new image, and the update's events say what came as a delta. Version 3's delta is
 * planted by the test: a well-formed delta, with a correct digest, that rebuilds *other* bytes;
 * the device refuses it (diff_id mismatch) and fetches the full layer instead. Version 4's layer
 * changed throughout: the gateway refuses the delta as over its size budget and fioup says so.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { RegistryStorage } from "../../gateway/registry/storage.ts";
import { DELTA_MEDIA_TYPE, deltaWindowLog } from "../../lib/oci/delta.ts";
import { sha256 } from "../../lib/oci/digest.ts";
import { servedBytes, startGateway, type GatewayHandle } from "../harness/gateway.ts";
import type { BusyboxImageOptions, BuiltImage, ImageFile } from "../harness/images.ts";
import { run, tempDir } from "../harness/tmp.ts";
import {
  Device, Publisher, asTestGateway, deviceOnV1, freePort, httpGet, httpdCompose, pushImageDetailed, randomBytes, startDockerRegistry, startDockerd,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "../fioup/_setup.ts";
import { downloadReport, fileNear, realFilePaths, realFiles, realFilesImage } from "./_real-files.ts";

const APP = `deltaapp${process.pid}`;
const REPO = "test/deltas";
/** Bytes of the file version 2 replaces with random ones. */
const CHANGED = 1 << 20;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let gwHandle: GatewayHandle;
let device: Device;
let pub: Publisher;
let port: number;
let uuid: string;
let files: Record<string, ImageFile>;
let paths: string[];

/** The app's image: busybox httpd serving `body`, over one big layer of real files (with `changes`). */
const image = (body: string, changes: Record<string, ImageFile>): BusyboxImageOptions => realFilesImage(files, body, changes);

/** Publishes `version` of the app: its image over the big layer with `changes`, or over `layers` instead. */
async function release(version: number, body: string, changes: Record<string, ImageFile>, layers?: BusyboxImageOptions["layers"]): Promise<BuiltImage> {
  const { ref, image: built } = await pushImageDetailed(upstream, REPO, `v${version}`, { ...image(body, changes), ...(layers ? { layers } : {}) });
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
  await pub.publish(version);
  return built;
}

/** The embedded registry's repository holding `digest` (publish copies images under the factory's name). */
async function repoHolding(root: string, digest: string): Promise<string> {
  const walk = async (dir: string, name: string): Promise<string | undefined> => {
    const entries = await readdir(dir).catch(() => [] as string[]);
    if (entries.includes("_layers") && (await Bun.file(join(dir, "_layers/sha256", digest.slice(7))).exists())) return name;
    for (const e of entries.filter((x) => !x.startsWith("_"))) {
      const found = await walk(join(dir, e), name ? `${name}/${e}` : e);
      if (found) return found;
    }
    return undefined;
  };
  const repo = await walk(join(root, "repositories"), "");
  if (!repo) throw new Error(`no repository holds ${digest}`);
  return repo;
}

beforeAll(async () => {
  [dockerd, upstream, gwHandle] = await Promise.all([startDockerd(), startDockerRegistry(), startGateway({ args: ["--polling-seconds", "1"] })]);
  gw = asTestGateway(gwHandle);
  device = await Device.create(dockerd);
  port = await freePort();
  paths = realFilePaths(50_000_000);
  files = realFiles(paths);
  ({ pub, uuid } = await deviceOnV1({ gw, upstream, device, app: APP, repo: REPO, port, body: "v1", image: image("v1", {}) }));
}, 180_000);

afterAll(async () => {
  await device?.cleanup([APP]).catch(() => undefined);
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

describe("image deltas", () => {
  let v2: BuiltImage;

  test("one changed 1 MB file in a 50 MB layer comes as a delta, and the device runs the new image", async () => {
    const changed = `/data/lib/${fileNear(paths, CHANGED)}`;
    v2 = await release(2, "v2", { [changed]: randomBytes(CHANGED) });
    const big = v2.layers.at(-1)!;
    expect(big.tar.byteLength).toBeGreaterThan(50_000_000);
    const before = await servedBytes(gwHandle, `device:${uuid}`);
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(await httpGet(port)).toBe("v2");
    const after = await servedBytes(gwHandle, `device:${uuid}`);
    const deltaBytes = after.delta - before.delta;
    const blobBytes = after.blob - before.blob;
    console.error(`v2: layer ${big.gz.byteLength} B gzip (${big.tar.byteLength} B tar); registry served ${deltaBytes} B of delta, ${blobBytes} B of full blobs`);
    expect(deltaBytes).toBeGreaterThan(CHANGED); // the new file is random: it travels whole
    // ...and little else: the changed tar headers and index.html, and zstd's framing. A bound that holds
    // whatever gzip level the whole layer is packed at: the layer itself, even packed with zstd -19, is over 10 MB.
    expect(deltaBytes).toBeLessThan(CHANGED + 256 * 1024);
    expect(deltaBytes * 10).toBeLessThan(big.gz.byteLength);
    expect(blobBytes).toBeLessThan(64 * 1024); // config and bundle only: no full layer
    // The wait for a delta the gateway makes on demand (silent seconds on a large layer) is announced first...
    expect(r.stderr).toMatch(new RegExp(`Layer ${big.digest} \\([0-9.]+ MiB\\): asking the gateway for a delta from sha256:[0-9a-f]{64}\n`));
    // ...and the device's log says the layer was rebuilt from a delta, not fetched whole.
    expect(r.stderr).toMatch(new RegExp(`\\] rebuilt ${big.digest} [0-9.]+ MiB \\(${big.gz.byteLength} bytes\\) from a delta of [0-9.]+ MiB \\(\\d+ bytes\\)\n`));
    const report = await downloadReport(gw, uuid, 2);
    expect(report.deltaLayers).toBe(1);
    expect(report.deltas[0]!.layer).toBe(big.digest);
    expect(report.bytesFull).toBeGreaterThan(big.gz.byteLength);
    expect(report.bytesFetched).toBeLessThan(report.bytesFull / 10);
  }, 120_000);

  test("a delta that rebuilds other bytes than the config pins is refused and the full layer fetched", async () => {
    const changed = `/data/lib/${fileNear(paths, 2 << 20)}`;
    const v3 = await release(3, "v3", { [changed]: randomBytes(1 << 20) });
    const from = v2.layers.at(-1)!;
    const to = v3.layers.at(-1)!;
    // Plant the pair's outcome as the gateway would keep it, with a delta made to other bytes.
    const root = join(gw.dataDir, "registry");
    const storage = new RegistryStorage(root);
    const repo = await repoHolding(root, to.digest);
    const work = await tempDir("bad-delta-");
    const wrong = to.tar.slice();
    wrong[wrong.length >> 1]! ^= 0xff;
    writeFileSync(join(work, "from.tar"), from.tar);
    writeFileSync(join(work, "wrong.tar"), wrong);
    const windowLog = deltaWindowLog(from.tar.byteLength, to.tar.byteLength);
    await run(["zstd", "-q", "-f", `--long=${windowLog}`, `--patch-from=${join(work, "from.tar")}`, join(work, "wrong.tar"), "-o", join(work, "bad.zst")]);
    const bad = new Uint8Array(await Bun.file(join(work, "bad.zst")).arrayBuffer());
    const digest = sha256(bad);
    await storage.commitBlobFile(join(work, "bad.zst"), digest);
    await storage.linkBlob(repo, digest);
    await mkdir(join(root, "deltas/blobs"), { recursive: true });
    writeFileSync(join(root, "deltas/blobs", digest.slice(7)), "");
    const descriptor = { mediaType: DELTA_MEDIA_TYPE, digest, size: bad.byteLength, from: from.digest, to: to.digest, fromSize: from.tar.byteLength, toSize: to.tar.byteLength, windowLog };
    writeFileSync(join(root, "deltas", `${from.digest.slice(7)}-${to.digest.slice(7)}.json`), JSON.stringify({ descriptor }));

    const before = await servedBytes(gwHandle, `device:${uuid}`);
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(await httpGet(port)).toBe("v3");
    const after = await servedBytes(gwHandle, `device:${uuid}`);
    console.error(`v3: planted delta ${bad.byteLength} B; registry served ${after.delta - before.delta} B of delta, ${after.blob - before.blob} B of full blobs (layer ${to.gz.byteLength} B)`);
    expect(after.delta - before.delta).toBe(bad.byteLength); // it was fetched...
    expect(after.blob - before.blob).toBeGreaterThanOrEqual(to.gz.byteLength); // ...refused, and the layer came whole
    const report = await downloadReport(gw, uuid, 3);
    expect(report.deltaLayers).toBe(0);
    expect(r.stderr).toContain("no delta");
  }, 120_000);

  test("a layer that changed throughout comes whole, and fioup says the delta would be over the gateway's budget", async () => {
    // The big layer's place now holds 4 MiB of random bytes: nothing of the old layer helps.
    const v4 = await release(4, "v4", {}, [{ "/data/random.bin": randomBytes(4 << 20), "/www/index.html": "v4" }]);
    const layer = v4.layers.at(-1)!;
    const before = await servedBytes(gwHandle, `device:${uuid}`);
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(await httpGet(port)).toBe("v4");
    const after = await servedBytes(gwHandle, `device:${uuid}`);
    expect(r.stderr).toMatch(new RegExp(`Layer ${layer.digest}: no delta \\(.*: the delta \\(\\d+\\.\\d MiB\\) is over 75% of the layer \\(4\\.\\d MiB\\): the layer costs about as much whole and needs no rebuild\\); fetching it whole`));
    expect(after.delta - before.delta).toBe(0); // the refused delta never travels
    expect(after.blob - before.blob).toBeGreaterThanOrEqual(layer.gz.byteLength);
  }, 120_000);
});
