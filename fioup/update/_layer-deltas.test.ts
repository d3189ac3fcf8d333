/**
 * fetchLayerDelta with an offline bundle's delta and a blob store whose disk fills during the
 * rebuild (a small tmpfs this file mounts and unmounts; root, as the tests run): the bundle has
 * no whole layer to fall back to, so the full disk is thrown as such, not turned into "no delta".
 * With room, the rebuild reports its progress as it goes, so a large layer is not silent. A delta
 * that claims to rebuild more than the signed target records for the layer is refused unread.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BundleRegistry } from "../../lib/bundle/bundle-registry.ts";
import type { Bundle } from "../../lib/bundle/format.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { DELTA_MEDIA_TYPE, deltaWindowLog } from "../../lib/oci/delta.ts";
import { sha256 } from "../../lib/oci/digest.ts";
import { run, tempDir } from "../../test/harness/tmp.ts";
import { fetchLayerDelta, RebuildNoSpaceError, type DeltaCandidate } from "./_layer-deltas.ts";
import { recordedLayerSizes } from "../../lib/api/target.ts";
import { EXIT, exitCodeFor } from "../exit-codes.ts";
import { FetchFailedError } from "./fetch-step.ts";

const MiB = 1 << 20;
let work: string;
let mnt: string;
let mounted = false;

beforeAll(async () => {
  work = await tempDir("layer-deltas-");
  mnt = join(work, "store");
  mkdirSync(mnt);
  // Room for the base layer and the delta, not for the 6 MiB the layer rebuilds to.
  expect((await run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt])).code).toBe(0);
  mounted = true;
});

afterAll(async () => {
  if (mounted) await run(["umount", mnt]);
});

/** Bytes that do not compress. */
const random = (n: number) => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
};

/**
 * A bundle carrying a 6 MiB layer as a delta from a 4 MiB one, and a blob store at `root` holding
 * that base: gzip, or zstd (its frame asking the window of Window_Descriptor `window` when given).
 */
async function deltaFixture(root: string, o: { zstd?: { window?: number } } = {}) {
  const baseTar = random(4 * MiB);
  const newTar = new Uint8Array(6 * MiB);
  newTar.set(baseTar);
  newTar.set(random(2 * MiB), 4 * MiB);
  let baseGz = Bun.gzipSync(baseTar, { level: 1 });
  if (o.zstd) {
    // zstd from a pipe writes a Window_Descriptor (no content size): the byte after the frame's descriptor.
    const z = Bun.spawnSync(["zstd", "-q", "-c", "-1"], { stdin: baseTar });
    expect(z.stdout[4]! & 0x20).toBe(0);
    baseGz = new Uint8Array(z.stdout);
    if (o.zstd.window !== undefined) baseGz[5] = o.zstd.window;
  }
  writeFileSync(join(work, "from.tar"), baseTar);
  writeFileSync(join(work, "to.tar"), newTar);
  const deltaFile = join(work, "d.zst");
  await run(["zstd", "-q", "-f", `--long=${deltaWindowLog(baseTar.byteLength, newTar.byteLength)}`, `--patch-from=${join(work, "from.tar")}`, join(work, "to.tar"), "-o", deltaFile]);
  const deltaBytes = await Bun.file(deltaFile).bytes();
  const config = new TextEncoder().encode(JSON.stringify({ rootfs: { type: "layers", diff_ids: [sha256(newTar)] } }));
  const dir = join(work, "bundle");
  mkdirSync(join(dir, "blobs/sha256"), { recursive: true });
  for (const b of [deltaBytes, config]) writeFileSync(join(dir, "blobs/sha256", sha256(b).slice(7)), b);
  const store = new DeviceBlobStore(root);
  const base = sha256(baseGz);
  store.putBytes(base, baseGz);
  const layer = sha256(new Uint8Array([1])); // the registry digest of the new layer: never fetched, only named
  const loc = { registry: "gw.example", repo: "main/app" };
  const cfg = { digest: sha256(config), size: config.byteLength, mediaType: "application/vnd.oci.image.config.v1+json" };
  const delta = {
    mediaType: DELTA_MEDIA_TYPE, digest: sha256(deltaBytes), size: deltaBytes.byteLength, from: base, to: layer,
    fromSize: baseTar.byteLength, toSize: newTar.byteLength, windowLog: deltaWindowLog(baseTar.byteLength, newTar.byteLength), ...loc,
  } as const;
  const bundle = { dir, id: "test", index: { bundle: { blobs: [{ ...cfg, kind: "config", ...loc }], deltas: [delta], from: 1 } } } as unknown as Bundle;
  const c: DeltaCandidate = { layer: { digest: layer, size: 3 * MiB, kind: "layer", mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...loc }, base, config: cfg, index: 0 };
  return { reg: new BundleRegistry(bundle, loc.registry), store, c, layer, toSize: newTar.byteLength };
}

test("a bundle's delta whose rebuild fills the blob store's disk is said as a full disk, not as a missing delta", async () => {
  const { reg, store, c, layer } = await deltaFixture(mnt);
  const refused: string[] = [];
  const err = await fetchLayerDelta(reg, store, c, { onRefused: (why) => refused.push(why) }).catch((e: unknown) => e);
  expect(refused).toEqual([]);
  expect(err).toBeInstanceOf(RebuildNoSpaceError);
  expect((err as Error).message).toBe(`Cannot rebuild layer ${layer} from the bundle's delta: no space left on the device (the blob store ${mnt}); free space there and apply the bundle again`);
  // The fetch step wraps it; fioup exits as for any lack of space (41), not as a failed fetch (40).
  expect(exitCodeFor(new FetchFailedError(err))).toBe(EXIT.NO_SPACE);
  expect(exitCodeFor(new FetchFailedError(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" })))).toBe(EXIT.FETCH_FAILED);
  // A bare write the disk refused (SQLite's own error, no class of ours): 41, not 1.
  expect(exitCodeFor(Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" }))).toBe(EXIT.NO_SPACE);
  expect(exitCodeFor(new Error("something else"))).toBe(EXIT.ERROR);
}, 60_000);

test("a layer rebuilt from a bundle's delta reports its progress as it grows, up to the whole layer", async () => {
  const { reg, store, c, toSize } = await deltaFixture(join(work, "roomy"));
  const seen: [number, number][] = [];
  const report = await fetchLayerDelta(reg, store, c, { onRebuilt: (done, total) => seen.push([done, total]) });
  expect(report?.layer).toBe(c.layer.digest);
  expect(seen.length).toBeGreaterThan(1); // before the end, not only at it
  expect(seen.every(([, total]) => total === toSize)).toBe(true);
  expect(seen.every(([done], i) => i === 0 || done >= seen[i - 1]![0])).toBe(true);
  expect(seen.at(-1)).toEqual([toSize, toSize]);
}, 60_000);

test("a bundle's delta claiming more than the unpacked size the signed target records is refused before it is read", async () => {
  const { reg, store, c, toSize } = await deltaFixture(join(work, "recorded"));
  const refused: string[] = [];
  const rebuilt: number[] = [];
  const report = await fetchLayerDelta(reg, store, { ...c, layer: { ...c.layer, unpackedSize: toSize - 1 } }, { onRefused: (why) => refused.push(why), onRebuilt: (done) => rebuilt.push(done) });
  expect(report).toBeUndefined();
  expect(refused).toEqual([`the delta claims to rebuild ${toSize} bytes, more than the layer's ${toSize - 1} (the unpacked size the signed target records)`]);
  expect(rebuilt).toEqual([]);
  // Recorded as the signed target's apps record them: every app's sizes, by layer digest.
  const a = `sha256:${"a".repeat(64)}`;
  const b = `sha256:${"b".repeat(64)}`;
  const apps = { one: { uri: "r/main/one@sha256:x", uncompressedLayerSizes: { [a]: 10 } }, two: { uri: "r/main/two@sha256:y", uncompressedLayerSizes: { [b]: 20 } }, three: { uri: "r/main/three@sha256:z" } };
  expect(recordedLayerSizes({ docker_compose_apps: apps })).toEqual(new Map([[a, 10], [b, 20]]));
  expect(recordedLayerSizes(undefined)).toEqual(new Map());
}, 60_000);

test("an old layer stored as zstd counts in the rebuild's memory check the window its decoding fills, at most the layer's unpacked size: one declaring 2 GiB for a 4 MiB layer is not refused", async () => {
  // Window_Descriptor 0xa8: exponent 21, a window of 2^31 bytes (zstd --long=31 from a pipe), for a 4 MiB layer.
  const { reg, store, c } = await deltaFixture(join(work, "zstd-window"), { zstd: { window: 0xa8 } });
  const refused: string[] = [];
  const report = await fetchLayerDelta(reg, store, c, { onRefused: (why) => refused.push(why) });
  expect(refused).toEqual([]);
  expect(report?.layer).toBe(c.layer.digest);
  // One declaring 2 TiB (0xf8: exponent 31) still counts no more than the 4 MiB the layer unpacks to: not
  // low memory; the bundle's rebuild is tried and the decoder refuses the window (its limit is 2 GiB).
  const huge = await deltaFixture(join(work, "zstd-huge"), { zstd: { window: 0xf8 } });
  const hugeRefused: string[] = [];
  expect(await fetchLayerDelta(huge.reg, huge.store, huge.c, { onRefused: (why) => hugeRefused.push(why) })).toBeUndefined();
  expect(hugeRefused).toHaveLength(1);
  expect(hugeRefused[0]).not.toContain("low memory");
  // The same layer with the window zstd gave it rebuilds too.
  const ok = await deltaFixture(join(work, "zstd-ok"), { zstd: {} });
  expect((await fetchLayerDelta(ok.reg, ok.store, ok.c, {}))?.layer).toBe(ok.c.layer.digest);
}, 60_000);
