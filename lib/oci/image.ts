/**
 * Pulling an image: resolve a tag or digest to the manifest for one platform (through an
 * index if there is one), then bring its config, layers and manifest bytes into a BlobStore.
 * fioup and preload both start here.
 *
 * @module
 */
import type { BlobStore, PullBlobOptions } from "./blob-store.ts";
import { parseManifest, type Descriptor, type ImageIndex, type ImageManifest } from "./manifest.ts";
import { isManifestMediaType } from "./media-types.ts";
import { byPlatformRank, formatPlatform, hostPlatform, normalizePlatform, type Platform } from "./platform.ts";
import type { RegistryClient } from "./registry-client.ts";

/** An index has no manifest for the wanted platform (`image`: the reference, when the caller knows it). */
export class NoMatchingPlatformError extends Error {
  override name = "NoMatchingPlatformError";
  readonly available: string[];
  constructor(want: Platform, available: string[], image?: string) {
    const offers = `the index offers ${available.length ? available.join(", ") : "none"}`;
    const platform = formatPlatform(normalizePlatform(want));
    super(image ? `Cannot use image "${image}": no manifest for ${platform} (${offers})` : `No manifest for platform ${platform}: ${offers}`);
    this.available = available;
  }
}

/**
 * Picks the manifest for a platform out of an index. Attestation entries (`unknown/unknown`)
 * never match.
 *
 * @example
 * ```ts
 * selectPlatformManifest(index, { os: "linux", architecture: "arm64" }).digest;
 * ```
 * @throws {NoMatchingPlatformError}
 */
export function selectPlatformManifest(index: ImageIndex, platform: Platform): Descriptor {
  const candidates = index.manifests.filter((m) => isManifestMediaType(m.mediaType) && m.platform);
  const found = byPlatformRank(platform, candidates)[0];
  if (found) return found;
  throw new NoMatchingPlatformError(
    platform,
    candidates.map((m) => formatPlatform(m.platform!)).filter((p) => p !== "unknown/unknown"),
  );
}

/** The result of {@link pullImage}. */
export interface PulledImage {
  /** Digest of the platform's image manifest (what `docker` calls the repo digest on one platform). */
  manifestDigest: string;
  manifestMediaType: string;
  manifest: ImageManifest;
  /** The index digest if the reference resolved to an index. */
  indexDigest?: string;
  configDigest: string;
  layers: Descriptor[];
  /** Bytes downloaded by this call (0 when everything was already in the store). */
  fetched: number;
}

/** Options of {@link pullImage}. */
export interface PullImageOptions {
  /** Default: the host's platform. Ignored when the reference is a plain manifest. */
  platform?: Platform;
  /** Total progress across config and layers. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  retries?: number;
  /** Parallel blob downloads (default 3). */
  concurrency?: number;
}

/**
 * Pulls one image for one platform into a store: config, layers, and the manifest (and
 * index) bytes themselves, so the store alone can later rebuild or push the image.
 *
 * @example
 * ```ts
 * const img = await pullImage(client, "main/app", "sha256:...", store, { platform: { os: "linux", architecture: "amd64" } });
 * img.configDigest; // the image ID docker will report
 * ```
 * @throws {NoMatchingPlatformError | RegistryError | DigestMismatchError | InvalidManifestError}
 */
export async function pullImage(client: RegistryClient, repo: string, ref: string, store: BlobStore, opts: PullImageOptions = {}): Promise<PulledImage> {
  const platform = opts.platform ?? hostPlatform();
  let fetched = 0;
  let m = await client.getManifest(repo, ref, { signal: opts.signal });
  let parsed = parseManifest(m.bytes, m.mediaType);
  let indexDigest: string | undefined;
  if (parsed.kind === "index") {
    indexDigest = m.digest;
    await store.writeBytes(m.bytes, m.digest);
    const desc = selectPlatformManifest(parsed.index, platform);
    m = await client.getManifest(repo, desc.digest, { signal: opts.signal });
    parsed = parseManifest(m.bytes, m.mediaType);
    if (parsed.kind !== "manifest") throw new TypeError(`Cannot pull ${repo}@${desc.digest}: index entry is not an image manifest`);
  }
  const manifest = parsed.manifest;
  const blobs = [manifest.config, ...manifest.layers];
  const total = blobs.reduce((n, b) => n + b.size, 0);
  const done = new Map<string, number>();
  const report = () => opts.onProgress?.([...done.values()].reduce((a, b) => a + b, 0), total);
  const unique = [...new Map(blobs.map((b) => [b.digest, b])).values()];
  await forEachLimit(unique, opts.concurrency ?? 3, async (b) => {
    const r = await store.pull(client, repo, b, {
      signal: opts.signal,
      retries: opts.retries,
      onProgress: (n) => {
        done.set(b.digest, n);
        report();
      },
    } satisfies PullBlobOptions);
    done.set(b.digest, b.size);
    fetched += r.fetched;
  });
  report();
  await store.writeBytes(m.bytes, m.digest);
  const out: PulledImage = {
    manifestDigest: m.digest,
    manifestMediaType: parsed.mediaType,
    manifest,
    configDigest: manifest.config.digest,
    layers: manifest.layers,
    fetched,
  };
  if (indexDigest) out.indexDigest = indexDigest;
  return out;
}

/** Runs `fn` over items with at most `limit` running at once; the first failure rejects. */
export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failed !== undefined) throw failed;
}
