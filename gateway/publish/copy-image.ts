/**
 * Copying a third-party image into the factory registry, so devices need
 * only one registry: the manifest bytes are copied unchanged (so the pinned
 * digest is the source's), with every blob they reference. With a platform,
 * an index is narrowed to that platform's manifest, which is what gets pinned.
 *
 * @module
 */
import { selectPlatformManifest } from "../../lib/oci/image.ts";
import { parseManifest } from "../../lib/oci/manifest.ts";
import type { Platform } from "../../lib/oci/platform.ts";
import type { FetchedManifest, RegistryClient } from "../../lib/oci/registry-client.ts";
import { ensureBlob, ensureManifest, type Destination } from "./transfer.ts";

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
): Promise<FetchedManifest> {
  const m = await src.getManifest(srcRepo, ref);
  const parsed = parseManifest(m.bytes, m.mediaType);
  if (parsed.kind === "index") {
    if (opts.platform) {
      const child = selectPlatformManifest(parsed.index, opts.platform);
      return await copyImage(src, srcRepo, child.digest, dst, dstRepo, {});
    }
    for (const child of parsed.index.manifests) await copyImage(src, srcRepo, child.digest, dst, dstRepo, {});
  } else {
    const blobs = [parsed.manifest.config, ...parsed.manifest.layers];
    for (const b of blobs) {
      if (b.urls?.length) continue; // foreign layers stay where their URLs say
      await ensureBlob(dst, dstRepo, b, { client: src, repo: srcRepo });
    }
  }
  await ensureManifest(dst, dstRepo, m);
  return { ...m, mediaType: parsed.mediaType };
}
