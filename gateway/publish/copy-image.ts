/**
 * Copying a third-party image into the factory registry, so devices need
 * only one registry: the manifest bytes are copied unchanged (so the pinned
 * digest is the source's), with every blob they reference. With a platform,
 * an index is narrowed to that platform's manifest, which is what gets pinned.
 * Blobs the destination already has are not downloaded.
 *
 * @module
 */
import { selectPlatformManifest } from "../../lib/oci/image.ts";
import { parseManifest } from "../../lib/oci/manifest.ts";
import { platformOfConfig, type Platform } from "../../lib/oci/platform.ts";
import { registrySource } from "../../lib/oci/push.ts";
import type { FetchedManifest, RegistryClient } from "../../lib/oci/registry-client.ts";
import { ensureBlobs, ensureManifest, stagingStore, type Destination } from "./transfer.ts";

/** What a copy pinned: the manifest (or index) and the platforms it offers. */
export interface CopiedImage {
  manifest: FetchedManifest;
  platforms: Platform[];
  /** Layer digests of a single image; empty for an index. */
  layers: string[];
}

/**
 * Copies `srcRepo@ref` from `src` into `dstRepo` of the destination; returns the manifest pinned.
 *
 * @throws {NoMatchingPlatformError} If `platform` is given and the index has no such manifest.
 * @throws {RegistryError} If the source does not have the image or the destination refuses it.
 */
export async function copyImage(
  src: RegistryClient,
  srcRepo: string,
  ref: string,
  dst: Destination,
  dstRepo: string,
  opts: { platform?: Platform } = {},
): Promise<CopiedImage> {
  const m = await src.getManifest(srcRepo, ref);
  const parsed = parseManifest(m.bytes, m.mediaType);
  let platforms: Platform[];
  let layers: string[] = [];
  if (parsed.kind === "index") {
    if (opts.platform) {
      const child = selectPlatformManifest(parsed.index, opts.platform);
      return await copyImage(src, srcRepo, child.digest, dst, dstRepo, {});
    }
    for (const child of parsed.index.manifests) await copyImage(src, srcRepo, child.digest, dst, dstRepo, {});
    platforms = parsed.index.manifests.flatMap((c) => (c.platform && c.platform.os !== "unknown" ? [c.platform] : []));
  } else {
    const sameRegistry = src.registry === dst.client.registry && src.baseUrl === dst.client.baseUrl;
    // Foreign layers stay where their URLs say.
    const blobs = [parsed.manifest.config, ...parsed.manifest.layers].filter((b) => !b.urls?.length);
    await ensureBlobs(dst, dstRepo, blobs, registrySource(src, srcRepo, stagingStore(dst)), sameRegistry ? { mountFrom: [srcRepo] } : {});
    const p = platformOfConfig(await src.getBlobBytes(srcRepo, parsed.manifest.config.digest, { maxBytes: 4 * 1024 * 1024 }));
    platforms = p ? [p] : [];
    layers = parsed.manifest.layers.map((l) => l.digest);
  }
  await ensureManifest(dst, dstRepo, m);
  return { manifest: { ...m, mediaType: parsed.mediaType }, platforms, layers };
}
