/**
 * Offline bundles with layer deltas, end to end: an app whose image has a ~20 MB layer of real
 * files (shared libraries); version 2 changes one 1 MB file. `gateway export --from 1` carries
 * that layer as a delta (made by the gateway's registry, rebuilt and checked at export time)
 * and weighs a fraction of the `--no-deltas` bundle. A device with no route to the gateway
 * refuses a bundle whose delta was replaced by one that rebuilds other bytes (the update fails
 * naming the layer, v1 keeps running), then rebuilds the layer from the real bundle and runs
 * v2; its download event reports the delta as an online update does. A device whose newest
 * update (fetched, then cancelled) brought another layer of that image path still uses the
 * bundle's delta, from the `--from` version's layer it holds. So does a device whose update
 * records no longer name that image path (the DB keeps its last 20 updates): the base is what
 * it holds, in its blob store or, once the store lost the layer, in its Docker Engine (exported
 * and checked against the layer's diff_id).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { cpSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RegistryStorage } from "../../gateway/registry/storage.ts";
import type { DeviceEvent } from "../../lib/api/index.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { deltaWindowLog } from "../../lib/oci/delta.ts";
import { sha256 } from "../../lib/oci/digest.ts";
import { servedBytes, type GatewayHandle } from "../harness/gateway.ts";
import type { BuiltImage, ImageFile } from "../harness/images.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { httpGet, httpdCompose, pushImageDetailed, type Device, type DockerRegistryHandle, type Publisher, type TestGateway } from "../fioup/_setup.ts";
import { realFilePaths, realFiles, realFilesImage, type DownloadReport } from "../deltas/_real-files.ts";
import { bundleIndex, dropIn, gatewayExport, goOffline, OFFLINE_DROP_IN, offlineRig, realFilesV2, type OfflineRig } from "./_setup.ts";

const APP = `offdelta${process.pid}`;
const REPO = "test/offline-deltas";
const HWID = "amd64-linux";
let rig: OfflineRig;
let upstream: DockerRegistryHandle;
let gwHandle: GatewayHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let port: number;
let uuid: string;
let bundles: string;
let files: Record<string, ImageFile>;
let v2: BuiltImage;
let exportLog: string;

/** busybox httpd serving `body`, over one big layer of real files (with `changes`). */
const image = (body: string, changes: Record<string, ImageFile> = {}) => realFilesImage(files, body, changes);

/**
 * A well-formed delta from v1's big layer (which the device holds) that rebuilds *other* bytes than
 * v2's layer: its own digest is right, only the diff_id check can catch it.
 */
async function wrongDelta(): Promise<{ file: string; bytes: Uint8Array; digest: string; from: string }> {
  const from = bundleIndex(join(bundles, "deltas")).bundle.deltas[0].from as string;
  const work = await tempDir("offline-bad-delta-");
  const base = Bun.gunzipSync(await Bun.file(new RegistryStorage(join(gw.dataDir, "registry")).blobPath(from)).bytes());
  const wrong = v2.layers.at(-1)!.tar.slice();
  wrong[wrong.length >> 1]! ^= 0xff;
  writeFileSync(join(work, "from.tar"), base);
  writeFileSync(join(work, "wrong.tar"), wrong);
  const file = join(work, "bad.zst");
  await run(["zstd", "-q", "-f", `--long=${deltaWindowLog(base.byteLength, wrong.byteLength)}`, `--patch-from=${join(work, "from.tar")}`, join(work, "wrong.tar"), "-o", file]);
  const bytes = await Bun.file(file).bytes();
  return { file, bytes, digest: sha256(bytes), from };
}

/** Bytes of the files under a bundle's blobs/ (what a USB stick must hold). */
const blobBytes = (dir: string) => readdirSync(join(dir, "blobs/sha256")).reduce((n, f) => n + statSync(join(dir, "blobs/sha256", f)).size, 0);

beforeAll(async () => {
  const paths = realFilePaths(20_000_000);
  files = realFiles(paths);
  rig = await offlineRig({ app: APP, repo: REPO, body: "v1", tmp: "offline-deltas-", image: image("v1") });
  ({ upstream, gwHandle, gw, device, pub, port, uuid, bundles } = rig);
  ({ image: v2, exportLog } = await realFilesV2(rig, paths, files, HWID));
  await goOffline(device);
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

describe("offline bundles with layer deltas", () => {
  test("a bundle made --from carries the changed big layer as a delta, a fraction of the whole-layer bundle", () => {
    const big = v2.layers.at(-1)!;
    expect(big.gz.byteLength).toBeGreaterThan(5_000_000);
    const withDeltas = bundleIndex(join(bundles, "deltas")).bundle;
    const whole = bundleIndex(join(bundles, "whole")).bundle;
    expect(whole.format).toBe(1); // no deltas: readable by any reader of format 1
    expect(whole.deltas).toBeUndefined();
    expect(whole.blobs.map((b: { digest: string }) => b.digest)).toContain(big.digest);
    expect(withDeltas.format).toBe(2);
    expect(withDeltas.deltas).toHaveLength(1);
    expect(withDeltas.deltas[0]).toMatchObject({ to: big.digest, repo: expect.any(String) });
    expect(withDeltas.blobs.map((b: { digest: string }) => b.digest)).not.toContain(big.digest);
    const [d, w] = [blobBytes(join(bundles, "deltas")), blobBytes(join(bundles, "whole"))];
    console.error(`bundle v1 -> v2: ${d} B with deltas, ${w} B with whole layers (layer ${big.gz.byteLength} B gzip)`);
    expect(d).toBe(withDeltas.bytes);
    expect(w).toBe(whole.bytes);
    expect(d).toBeGreaterThan(1 << 20); // the changed file is random: it travels whole
    expect(d * 4).toBeLessThan(w);
    // The export rebuilt the layer from the delta before it chose to carry the delta.
    expect(exportLog).toContain(`layer ${big.digest.slice(0, 19)}`);
    expect(exportLog).toContain("rebuilt and checked against its diff_id");
    // What it says it carries, in the singular for one.
    expect(exportLog).toContain("; 1 layer as a delta (1.0 MiB instead of");
    expect(exportLog).toMatch(/, \d+ blobs and 1 layer delta \(1\.0 MiB, \d+\.\d MiB with whole layers\)/);
  });

  /** `gateway export` of v2 from v1 into `out`, its stderr, and its end. */
  const exportInto = (out: string) =>
    Bun.spawn([process.execPath, join(import.meta.dir, "../../gateway/main.ts"), "export", "--data", gw.dataDir, "--target", "2", "--from", "1", "--hwid", HWID, "--out", out], { stdout: "ignore", stderr: "pipe" });

  /** An export into `out` sent `signal` at its first progress line: the metadata and the delta's rebuild are still to come. */
  async function exportStopped(out: string, signal: NodeJS.Signals) {
    const p = exportInto(out);
    let err = "";
    const decoder = new TextDecoder();
    const reader = p.stderr.getReader();
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      err += decoder.decode(r.value);
      if (err.includes("copying the TUF metadata") && !p.killed) p.kill(signal);
    }
    return { code: await p.exited, err, pid: p.pid };
  }

  test("an export stopped by SIGTERM removes what it wrote: --out can be given again", async () => {
    const out = join(bundles, "stopped");
    const { code, err } = await exportStopped(out, "SIGTERM");
    expect(code).toBe(143);
    expect(err).toContain(`gateway export: stopped by SIGTERM; removed the unfinished bundle from ${out}`);
    expect(readdirSync(bundles).filter((e) => e === "stopped" || e.startsWith(".export-"))).toEqual([]);
    await gatewayExport(gw, { target: 2, from: 1, hwid: HWID, out });
    expect(bundleIndex(out).bundle.deltas).toHaveLength(1);
  }, 60_000);

  test("an export killed outright (SIGKILL) leaves its lock in --out: the same command run again empties the unfinished bundle, says so, and exports", async () => {
    const out = join(bundles, "killed");
    const killed = await exportStopped(out, "SIGKILL");
    expect(readdirSync(out)).toContain(".export.lock");
    expect(readdirSync(out)).not.toContain("index.json");
    const again = exportInto(out);
    const [code, said] = await Promise.all([again.exited, new Response(again.stderr).text()]);
    expect(code, said).toBe(0);
    expect(said).toContain(`removed the unfinished bundle in ${out} that an export (process ${killed.pid}) left when it was killed`);
    expect(bundleIndex(out).bundle.deltas).toHaveLength(1);
    expect(readdirSync(out)).not.toContain(".export.lock");
  }, 60_000);

  test("a bundle whose delta rebuilds other bytes than the config pins is refused, and the device keeps v1", async () => {
    const bad = join(bundles, "tampered");
    cpSync(join(bundles, "deltas"), bad, { recursive: true });
    const index = bundleIndex(bad);
    const delta = index.bundle.deltas[0];
    const to = v2.layers.at(-1)!;
    // Swapped in with its digest and size in the index: only the diff_id check can catch it.
    const { bytes, digest } = await wrongDelta();
    rmSync(join(bad, "blobs/sha256", delta.digest.slice(7)));
    writeFileSync(join(bad, "blobs/sha256", digest.slice(7)), bytes);
    index.bundle.bytes += bytes.byteLength - delta.size;
    Object.assign(delta, { digest, size: bytes.byteLength });
    writeFileSync(join(bad, "index.json"), JSON.stringify(index));

    const r = await device.fioup("update", "--offline", bad);
    expect(r.code, r.stderr).toBe(40); // the fetch failed
    expect(r.stderr).toContain(`carries layer ${to.digest} only as a delta`);
    expect(r.stderr).toMatch(/the image config pins sha256:/); // why: the diff_id check
    expect(r.stderr).toContain("did not rebuild here from it (the reason is on the line above");
    expect((await device.blobs()).has(to.digest)).toBe(false);
    expect(await httpGet(port)).toBe("v1");
    expect((await device.fioup("status")).json.current.name).toBe(`${HWID}-1`);
  }, 60_000);

  test("a bundle whose delta is from a layer the device does not hold is refused, saying the device lacks that layer", async () => {
    // As a device on another version than --from sees it: the bundle's base is nothing it holds.
    const other = join(bundles, "other-base");
    cpSync(join(bundles, "deltas"), other, { recursive: true });
    const index = bundleIndex(other);
    const delta = index.bundle.deltas[0];
    delta.from = sha256(new TextEncoder().encode("a layer of a version this device never ran"));
    delete delta.fromDiffId;
    writeFileSync(join(other, "index.json"), JSON.stringify(index));

    const r = await device.fioup("update", "--offline", other);
    expect(r.code, r.stderr).toBe(40);
    expect(r.stderr).toContain(`carries layer ${delta.to} only as a delta from layer ${delta.from} (of version 1), and the device does not hold that layer`);
    expect(r.stderr).not.toContain("did not rebuild");
    expect(await httpGet(port)).toBe("v1");
  }, 60_000);

  test("a delta from the gateway that does not rebuild the layer is never put into a bundle: the layer travels whole", async () => {
    // Plant the pair's outcome in the gateway's delta cache, as test/deltas does, with the wrong delta.
    const { file, bytes, digest, from } = await wrongDelta();
    const good = bundleIndex(join(bundles, "deltas")).bundle.deltas[0];
    const root = join(gw.dataDir, "registry");
    const storage = new RegistryStorage(root);
    await storage.commitBlobFile(file, digest);
    await storage.linkBlob(good.repo, digest);
    writeFileSync(join(root, "deltas/blobs", digest.slice(7)), "");
    const planted = { ...good, digest, size: bytes.byteLength };
    delete planted.registry;
    delete planted.repo;
    writeFileSync(join(root, "deltas", `${from.slice(7)}-${good.to.slice(7)}.json`), JSON.stringify({ descriptor: planted }));

    const out = join(bundles, "planted");
    const log = await gatewayExport(gw, { target: 2, from: 1, hwid: HWID, out });
    const index = bundleIndex(out).bundle;
    expect(log).toContain("carried whole (no usable delta: Delta refused: the rebuilt layer hashes to");
    expect(index.format).toBe(1);
    expect(index.deltas).toBeUndefined();
    expect(index.blobs.map((b: { digest: string }) => b.digest)).toContain(good.to);
    expect(blobBytes(out)).toBe(blobBytes(join(bundles, "whole")));
  }, 60_000);

  test("the bundle with a delta updates a device without a route to the gateway, which reports it as online", async () => {
    const before = await servedBytes(gwHandle, `device:${uuid}`);
    const r = await device.fioup("update", "--offline", join(bundles, "deltas"));
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.toTarget).toBe(`${HWID}-2`);
    expect(await httpGet(port)).toBe("v2");
    expect(await servedBytes(gwHandle, `device:${uuid}`)).toEqual(before); // nothing came from the gateway

    // Back online: the queued events reach the gateway, with the same download report as online.
    dropIn(device, OFFLINE_DROP_IN, undefined);
    expect((await device.fioup("update")).code).toBe(3);
    const { updates } = await gw.admin<{ updates: { version?: string; success?: boolean; events: DeviceEvent[] }[] }>(`/admin/devices/${uuid}/updates`);
    const done = updates.find((u) => u.version === "2" && u.success === true)?.events.find((e) => e.eventType.id === "EcuDownloadCompleted");
    const report = JSON.parse(String(done?.event.details)) as DownloadReport; // the update to 2 that succeeded (an earlier one failed)
    const big = v2.layers.at(-1)!;
    const delta = bundleIndex(join(bundles, "deltas")).bundle.deltas[0];
    expect(report.deltaLayers).toBe(1);
    expect(report.deltas[0]).toMatchObject({ layer: big.digest, from: delta.from, deltaBytes: delta.size, layerBytes: big.gz.byteLength });
    expect(report.bytesFull).toBeGreaterThanOrEqual(big.gz.byteLength); // the refused attempt left the config and manifests in the store
    expect(report.bytesFetched).toBeLessThan(report.bytesFull / 4);
  }, 60_000);

  test("a device whose newest update (cancelled) brought another layer still rebuilds from the --from version's layer", async () => {
    // Online again (the previous test): v3 is fetched, then cancelled; its layer stays in the store,
    // so the base the device's own history suggests is v3's layer, not v2's (the bundle's).
    const v3 = await pushImageDetailed(upstream, REPO, "v3", image("v3"));
    const v4 = await pushImageDetailed(upstream, REPO, "v4", image("v4"));
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(v3.ref, port) });
    await pub.publish(3);
    const f = await device.fioup("fetch");
    expect(f.code, f.stderr).toBe(0);
    const c = await device.fioup("cancel");
    expect(c.code, c.stderr).toBe(0);
    expect(await httpGet(port)).toBe("v2");

    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(v4.ref, port) });
    await pub.publish(4);
    const out = join(bundles, "from2");
    await gatewayExport(gw, { target: 4, from: 2, hwid: HWID, out });
    const delta = bundleIndex(out).bundle.deltas?.[0];
    expect(delta).toMatchObject({ from: v2.layers.at(-1)!.digest, to: v4.image.layers.at(-1)!.digest });

    await goOffline(device);
    const r = await device.fioup("update", "--offline", out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.toTarget).toBe(`${HWID}-4`);
    expect(r.stderr).not.toContain("no delta");
    expect(await httpGet(port)).toBe("v4");
  }, 90_000);

  /** Forgets the device's update history, as when more than 20 updates went by since it named that image path. */
  const forgetHistory = () => {
    const db = new Database(join(device.sotaDir, "fioup.db"));
    try {
      db.run("DELETE FROM updates");
    } finally {
      db.close();
    }
  };

  /** Publishes version `n` with a new image and exports a bundle to it `--from` version `n - 1`. */
  let v5Image: BuiltImage;
  async function nextBundle(n: number, args: string[] = []): Promise<{ out: string; image: BuiltImage }> {
    const next = await pushImageDetailed(upstream, REPO, `v${n}`, image(`v${n}`));
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(next.ref, port) });
    await pub.publish(n);
    const out = join(bundles, `to${n}`);
    await gatewayExport(gw, { target: n, from: n - 1, hwid: HWID, out, args });
    return { out, image: next.image };
  }

  test("a device whose update records no longer name the image still rebuilds from the --from layer in its blob store", async () => {
    const before = (await device.fioup("status")).json.current.name;
    expect(before).toBe(`${HWID}-4`); // the previous test
    const { out, image: v5 } = await nextBundle(5);
    v5Image = v5;
    const delta = bundleIndex(out).bundle.deltas?.[0];
    expect(delta).toMatchObject({ to: v5.layers.at(-1)!.digest, fromDiffId: expect.stringMatching(/^sha256:/) });
    expect(new DeviceBlobStore(device.storeDir).has(delta.from)).toBe(true); // v4's layer, rebuilt from a delta
    forgetHistory();

    const r = await device.fioup("update", "--offline", out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.toTarget).toBe(`${HWID}-5`);
    expect(r.stderr).not.toContain("no delta");
    expect(await httpGet(port)).toBe("v5");
  }, 90_000);

  test("a device that holds the --from layer only in its Docker Engine rebuilds from the engine's copy, checked against its diff_id", async () => {
    const { out, image: v6 } = await nextBundle(6);
    const delta = bundleIndex(out).bundle.deltas?.[0];
    expect(delta).toMatchObject({ to: v6.layers.at(-1)!.digest });
    // The store lost v5's layer (and the manifests that name it): only the engine, which runs v5, has it.
    const store = new DeviceBlobStore(device.storeDir);
    const stored = store.holder(delta.from); // it came as a delta: its uncompressed tar
    expect(stored).toBeDefined();
    rmSync(store.path(stored!));
    rmSync(join(device.storeDir, "layers/sha256", delta.from.slice(7)), { force: true });
    rmSync(store.path(v5Image.manifestDigest));
    expect(store.has(delta.from)).toBe(false);
    forgetHistory();

    const r = await device.fioup("update", "--offline", out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.toTarget).toBe(`${HWID}-6`);
    expect(r.stderr).toContain(`delta base ${delta.from} exported from the Docker Engine`);
    expect(r.stderr).not.toContain("no delta");
    expect(await httpGet(port)).toBe("v6");
    // Nothing of the export is left behind.
    expect((readdirSync(device.storeDir, { recursive: true }) as string[]).filter((f) => f.endsWith(".save"))).toEqual([]);
  }, 90_000);

  test("a bundle that carries the layer whole is not asked for a delta, though the device holds a base for one", async () => {
    const { out, image: v7 } = await nextBundle(7, ["--no-deltas"]);
    expect(bundleIndex(out).bundle.deltas).toBeUndefined();
    const r = await device.fioup("update", "--offline", out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.toTarget).toBe(`${HWID}-7`);
    expect(r.stderr).not.toContain("no delta");
    expect(new DeviceBlobStore(device.storeDir).has(v7.layers.at(-1)!.digest)).toBe(true);
    expect(await httpGet(port)).toBe("v7");
  }, 90_000);
});
