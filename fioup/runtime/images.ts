/**
 * Loads a digest-pinned image from the blob store into the Docker Engine.
 *
 * `docker load` drops the registry digest, so `repo@sha256:...` would
 * never resolve offline and compose would try to pull. Instead each image gets
 * a local tag derived from its pinned digest, `<repository>:fioup-<32 hex>`,
 * which the app's `.fioup/images.yml` override points the service at. The
 * engine's image ID (sha256 of the config) must equal the pinned config
 * digest, so the tag names exactly the content that was signed for.
 *
 * @module
 */
import { formatReference, parseReference } from "../../lib/oci/reference.ts";
import { parseManifest, type Descriptor, type ImageManifest } from "../../lib/oci/manifest.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { dockerArchiveStream } from "../../lib/oci/docker-archive.ts";
import { byPlatformRank, formatPlatform, hostPlatform, type Platform } from "../../lib/oci/platform.ts";
import { UnpinnedImageError } from "../../lib/compose/pin.ts";
import { NoMatchingPlatformError } from "../../lib/oci/image.ts";
import { BlobNotInStoreError, hasBlob, readJsonBlob, readSmallBlob } from "./_store.ts";
import type { DockerEngine } from "./docker-engine.ts";

// A service image not pinned by digest, or an index without (a fetched) manifest for this platform: declared once, in lib.
export { NoMatchingPlatformError, UnpinnedImageError };

/** The engine refused the image tar (corrupt layer, diff_id mismatch, no space...). */
export class ImageLoadError extends Error {
  override name = "ImageLoadError";
  constructor(ref: string, cause: unknown) {
    super(`Cannot load image "${ref}" into the engine: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

/** After loading, the local tag names an image whose ID is not the pinned config digest. */
export class ImageIdMismatchError extends Error {
  override name = "ImageIdMismatchError";
  constructor(ref: string, tag: string, expected: string, actual: string | undefined) {
    super(`Cannot verify image "${ref}": ${tag} has image ID ${actual ?? "(none)"}, expected the pinned config digest ${expected}`);
  }
}

export { hostPlatform, type Platform };

/**
 * The local tag for a pinned reference: `<repository>:fioup-<first 32 hex of its digest>`.
 *
 * @example
 * ```ts
 * localTag("127.0.0.1:5000/main/app@sha256:0123…"); // {repository: "127.0.0.1:5000/main/app", tag: "fioup-0123…", full: "127.0.0.1:5000/main/app:fioup-0123…"}
 * ```
 * @throws {UnpinnedImageError | SyntaxError}
 */
export function localTag(ref: string): { repository: string; tag: string; full: string; digest: string } {
  const parsed = parseReference(ref);
  if (!parsed.digest) throw new UnpinnedImageError(ref);
  // Keep the repository as written (no docker.io/library/ expansion) so `docker images` reads naturally.
  const at = ref.indexOf("@");
  let repository = ref.slice(0, at);
  const colon = repository.lastIndexOf(":");
  if (colon > repository.lastIndexOf("/")) repository = repository.slice(0, colon);
  if (!repository) repository = formatReference({ registry: parsed.registry, repository: parsed.repository });
  const tag = `fioup-${parsed.digest.slice(parsed.digest.indexOf(":") + 1, parsed.digest.indexOf(":") + 33)}`;
  return { repository, tag, full: `${repository}:${tag}`, digest: parsed.digest };
}

/**
 * Resolves a pinned reference to the image manifest in the store: the manifest
 * itself, or from an index the entry for `platform` that the store holds.
 * @throws {BlobNotInStoreError | NoMatchingPlatformError | InvalidManifestError}
 */
export async function resolveStoredImage(storeRoot: string, ref: string, platform: Platform = hostPlatform()): Promise<{ manifestDigest: string; manifest: ImageManifest }> {
  const { digest } = localTag(ref);
  const parsed = parseManifest(await readSmallBlob(storeRoot, digest, `manifest of image "${ref}"`));
  if (parsed.kind === "manifest") return { manifestDigest: digest, manifest: parsed.manifest };
  for (const d of byPlatformRank(platform, parsed.index.manifests)) {
    if (!(await hasBlob(storeRoot, d.digest))) continue;
    const child = parseManifest(await readSmallBlob(storeRoot, d.digest, `manifest of image "${ref}"`));
    if (child.kind === "manifest") return { manifestDigest: d.digest, manifest: child.manifest };
  }
  throw new NoMatchingPlatformError(platform, parsed.index.manifests.flatMap((m) => (m.platform ? [formatPlatform(m.platform)] : [])), ref);
}

export interface LoadedImage {
  ref: string;
  /** `<repository>:fioup-<32 hex>` */
  tag: string;
  /** = the config digest */
  imageId: string;
  /** False when the engine already had it (tag and ID matched, or the ID only needed the tag). */
  loaded: boolean;
}

/**
 * Makes `ref` available in the engine under its local tag, loading it from
 * the store only when the engine lacks an image with the pinned config digest.
 * @throws {UnpinnedImageError | BlobNotInStoreError | NoMatchingPlatformError | ImageLoadError | ImageIdMismatchError | EngineError}
 */
export async function loadImageFromStore(
  engine: DockerEngine,
  storeRoot: string,
  ref: string,
  opts: { platform?: Platform; signal?: AbortSignal } = {},
): Promise<LoadedImage> {
  const lt = localTag(ref);
  const { manifest, manifestDigest } = await resolveStoredImage(storeRoot, ref, opts.platform);
  const imageId = manifest.config.digest;

  const current = await engine.inspectImage(lt.full);
  if (current?.Id === imageId) return { ref, tag: lt.full, imageId, loaded: false };

  // Same content already in the engine under another name: a tag is enough.
  if (await engine.inspectImage(imageId)) {
    await engine.tagImage(imageId, lt.repository, lt.tag);
  } else {
    for (const d of [manifest.config, ...manifest.layers]) {
      if (!(await hasBlob(storeRoot, d.digest))) throw new BlobNotInStoreError(d.digest, `blob of image "${ref}"`);
    }
    try {
      const tar = await dockerArchiveStream(new DeviceBlobStore(storeRoot), [{ manifestDigest, repoTags: [lt.full] }]);
      await engine.loadImages(tar, opts.signal);
    } catch (cause) {
      throw new ImageLoadError(ref, cause);
    }
  }
  const after = await engine.inspectImage(lt.full);
  if (after?.Id !== imageId) throw new ImageIdMismatchError(ref, lt.full, imageId, after?.Id);
  return { ref, tag: lt.full, imageId, loaded: true };
}

/** A layer that loading images puts under Docker's data root: staged as stored, and unpacked when `unpack`. */
export interface LayerLoad {
  layer: Descriptor;
  unpack: boolean;
}

/**
 * What {@link loadImageFromStore} will load for `refs`: nothing for an image the engine holds
 * (by its pinned config digest); for each other, every layer (`docker load` stages the whole
 * image tar under the data root), to be unpacked unless its diff_id is in `held` (the layers
 * of images the engine holds) or was counted for an earlier image. An image several services
 * run (by its config digest, however its references are written) is loaded once: counted once.
 * @throws {UnpinnedImageError | BlobNotInStoreError | NoMatchingPlatformError | CorruptBlobError | EngineError}
 */
export async function layersToLoad(engine: DockerEngine, storeRoot: string, refs: string[], held: Set<string>, platform?: Platform): Promise<LayerLoad[]> {
  const out: LayerLoad[] = [];
  const counted = new Set(held);
  const images = new Set<string>();
  for (const ref of refs) {
    const { manifest } = await resolveStoredImage(storeRoot, ref, platform);
    if (images.has(manifest.config.digest)) continue;
    images.add(manifest.config.digest);
    if (await engine.inspectImage(manifest.config.digest)) continue;
    const config = await readJsonBlob<{ rootfs?: { diff_ids?: unknown } }>(storeRoot, manifest.config.digest, `config of image "${ref}"`);
    const diffIds = Array.isArray(config.rootfs?.diff_ids) ? (config.rootfs.diff_ids as unknown[]) : [];
    manifest.layers.forEach((layer, i) => {
      const diffId = typeof diffIds[i] === "string" ? (diffIds[i] as string) : undefined;
      out.push({ layer, unpack: diffId === undefined || !counted.has(diffId) });
      if (diffId) counted.add(diffId);
    });
  }
  return out;
}
