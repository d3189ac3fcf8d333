/**
 * The compose-app artifact manifest: an OCI image manifest with
 * artifactType `application/vnd.fio+compose-app`, the empty config, and one
 * layer — the bundle — annotated with the bundle index's digest and size.
 * Serialised with a fixed key order so the same bundle gives the same app digest.
 *
 * @module
 */
import {
  APP_ARTIFACT_TYPE,
  APP_LAYER_MEDIA_TYPE,
  APP_MANIFEST_MEDIA_TYPE,
  BUNDLE_INDEX_DIGEST_ANNOTATION,
  BUNDLE_INDEX_SIZE_ANNOTATION,
  COMPOSE_APP_ANNOTATION,
  COMPOSE_APP_VERSION,
  EMPTY_CONFIG_DESCRIPTOR,
  MAX_APP_MANIFEST_BYTES,
  type AppManifest,
} from "./app-format.ts";

export class AppManifestTooLargeError extends Error {
  override name = "AppManifestTooLargeError";
}

/** A blob as the manifest refers to it. */
export interface BlobDescriptor {
  digest: string;
  size: number;
}

/**
 * Builds the app manifest for a bundle and its index.
 *
 * @example
 * ```ts
 * const { bytes, digest } = appManifest({ digest: b.digest, size: b.size }, { digest: b.indexDigest, size: b.indexBytes.byteLength });
 * ```
 * @throws {AppManifestTooLargeError} If the serialised manifest reaches 50 KiB.
 */
export function appManifest(
  bundle: BlobDescriptor,
  index: BlobDescriptor,
): { manifest: AppManifest; bytes: Uint8Array; digest: string } {
  const manifest: AppManifest = {
    schemaVersion: 2,
    mediaType: APP_MANIFEST_MEDIA_TYPE,
    artifactType: APP_ARTIFACT_TYPE,
    config: { ...EMPTY_CONFIG_DESCRIPTOR },
    layers: [
      {
        mediaType: APP_LAYER_MEDIA_TYPE,
        digest: bundle.digest,
        size: bundle.size,
        annotations: {
          [BUNDLE_INDEX_DIGEST_ANNOTATION]: index.digest,
          [BUNDLE_INDEX_SIZE_ANNOTATION]: String(index.size),
        },
      },
    ],
    annotations: { [COMPOSE_APP_ANNOTATION]: COMPOSE_APP_VERSION },
  };
  const bytes = new TextEncoder().encode(JSON.stringify(manifest));
  if (bytes.byteLength > MAX_APP_MANIFEST_BYTES) {
    throw new AppManifestTooLargeError(`Cannot build the app manifest: ${bytes.byteLength} bytes is over the 50 KiB limit`);
  }
  return { manifest, bytes, digest: "sha256:" + new Bun.CryptoHasher("sha256").update(bytes).digest("hex") };
}
