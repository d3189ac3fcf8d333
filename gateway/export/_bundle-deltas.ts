/**
 * Layer deltas for a bundle made `--from` a version: for each layer the bundle would carry whole,
 * ask the gateway's registry for a delta from the layer the `from` target has at the same place
 * (the base a device on that version asks for: {@link pickDeltaBase}), and carry the delta
 * instead only if it rebuilds, here and now, the exact bytes the image config's diff_id pins.
 * A device offline has no full layer to fall back to, so a delta that would not rebuild must
 * never replace one. The gateway makes the delta (gateway/registry/deltas.ts: budgets, cache per
 * pair); the rebuild is the device's own (lib/oci/delta.ts). The base layer and the rebuilt tar
 * go to the scratch folder, one layer's at a time, after a check that they fit there: a scratch
 * too small is an error naming it, not a layer quietly carried whole (which may not fit the medium).
 *
 * @module
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { BundleDelta } from "../../lib/bundle/format.ts";
import type { AppBlob } from "../../lib/device/resolve.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { applyLayerDelta, configDiffId, MIN_DELTA_LAYER_BYTES, pickDeltaBase, requestDelta } from "../../lib/oci/delta.ts";
import { parseManifest, type ImageManifest } from "../../lib/oci/manifest.ts";
import type { RegistryClients } from "../../lib/oci/registry-clients.ts";
import { sizeText } from "../../lib/cli/bytes.ts";
import type { ProgressLine } from "../../lib/cli/progress.ts";
import { checkRoom, ExportWriteError, refusedWrite, sayWhere, type WritePlace } from "./_room.ts";

/** An image of a target: its path (`registry/repo`) and manifest. */
interface Image {
  at: string;
  registry: string;
  repo: string;
  manifest: ImageManifest;
}

/** The image manifests among `blobs`, read from `store` (resolution put them there). */
async function imagesOf(blobs: AppBlob[], store: DeviceBlobStore): Promise<Image[]> {
  const out: Image[] = [];
  for (const b of blobs) {
    if (b.kind !== "manifest") continue;
    const p = parseManifest(await store.read(b.digest));
    if (p.kind === "manifest") out.push({ at: `${b.registry}/${b.repo}`, registry: b.registry, repo: b.repo, manifest: p.manifest });
  }
  return out;
}

export interface BundleDeltaOptions {
  registry: RegistryClients;
  /** The only registry that makes deltas: the gateway's. */
  gatewayHost: string;
  /** The bundle's blob store (deltas and configs go there). */
  store: DeviceBlobStore;
  /** Scratch folder for the base layers and rebuilt tars (not in the bundle). */
  scratch: WritePlace;
  /** Every blob of the target, and every blob of the `from` target. */
  want: AppBlob[];
  had: AppBlob[];
  /** What the bundle would carry whole (the target's blobs the `from` target lacks). */
  carry: AppBlob[];
  /** Each layer's request and outcome printed, a base layer's bytes shown as they come. */
  progress: Pick<ProgressLine, "print" | "show">;
}

/**
 * The deltas to carry instead of whole layers, each verified by rebuilding its layer. A pair
 * the gateway refuses (no zstd, over its budgets, not smaller) or a delta that does not
 * rebuild the pinned bytes is logged and its layer carried whole.
 *
 * @throws {ExportWriteError} The scratch has no room for a layer's check.
 */
export async function bundleDeltas(o: BundleDeltaOptions): Promise<BundleDelta[]> {
  const carry = new Map(o.carry.filter((b) => b.kind === "layer" && b.size >= MIN_DELTA_LAYER_BYTES && b.registry === o.gatewayHost).map((b) => [b.digest, b]));
  if (!carry.size) return [];
  const held = new Set(o.had.filter((b) => b.kind === "layer").map((b) => b.digest));
  const earlier = new Map<string, ImageManifest[]>();
  for (const img of await imagesOf(o.had, o.store)) earlier.set(img.at, [...(earlier.get(img.at) ?? []), img.manifest]);
  const bases = new DeviceBlobStore(join(o.scratch.dir, "bases"));
  const out: BundleDelta[] = [];
  const seen = new Set<string>();
  for (const img of await imagesOf(o.want, o.store)) {
    for (const [index, l] of img.manifest.layers.entries()) {
      const layer = carry.get(l.digest);
      if (!layer || seen.has(l.digest)) continue;
      seen.add(l.digest);
      const base = pickDeltaBase(earlier.get(img.at) ?? [], index, l, (d) => held.has(d));
      if (!base) continue;
      const baseSize = [...(earlier.get(img.at) ?? [])].flatMap((m) => m.layers).find((x) => x.digest === base)!.size;
      const short = `${l.digest.slice(0, 19)} (${sizeText(l.size)})`;
      try {
        // The gateway may take a while to make a delta of a big layer: say which one it is on.
        o.progress.print(`  layer ${short}: asking for a delta from ${base.slice(0, 19)}`);
        const reg = o.registry(img.registry);
        const desc = await requestDelta(reg, img.repo, base, l);
        await o.store.pull(reg, img.repo, desc);
        // Rebuild it as the device will, and keep it only if it is the layer the config pins.
        await o.store.pull(reg, img.repo, img.manifest.config);
        const diffId = configDiffId(await o.store.read(img.manifest.config.digest), index);
        const scratch = { ...o.scratch, what: `the base layer and the rebuilt tar that check the delta of layer ${short}` };
        await checkRoom(scratch, baseSize + desc.toSize);
        const rebuilt = join(o.scratch.dir, "rebuilt.tar");
        try {
          await bases.pull(reg, img.repo, { digest: base, size: baseSize }, { onProgress: (n) => o.progress.show(`  layer ${short}: fetching its base to check the delta: ${sizeText(n)} of ${sizeText(baseSize)}`) });
          await applyLayerDelta({ base: await bases.open(base), baseSize: desc.fromSize, delta: await o.store.open(desc.digest), diffId, out: rebuilt, maxBytes: desc.toSize });
        } catch (e) {
          throw sayWhere(e, scratch);
        } finally {
          await rm(rebuilt, { force: true });
          await rm(bases.path(base), { force: true });
        }
        // The base's diff_id (from the `from` image's config) lets a device find the base in its Docker Engine.
        const fromImage = (earlier.get(img.at) ?? []).find((m) => m.layers.some((x) => x.digest === base))!;
        await o.store.pull(reg, img.repo, fromImage.config);
        const fromDiffId = configDiffId(await o.store.read(fromImage.config.digest), fromImage.layers.findIndex((x) => x.digest === base));
        out.push({ ...desc, registry: layer.registry, repo: layer.repo, fromDiffId });
        o.progress.print(`  layer ${short}: a delta of ${sizeText(desc.size)} from ${base.slice(0, 19)}, rebuilt and checked against its diff_id`);
      } catch (e) {
        // A full disk is no unusable delta: carrying the layer whole would only need more room.
        if (e instanceof ExportWriteError || refusedWrite(e)) throw e;
        o.progress.print(`  layer ${short}: carried whole (no usable delta: ${(e as Error).message})`);
      }
    }
  }
  await rm(join(o.scratch.dir, "bases"), { recursive: true, force: true });
  return out;
}
