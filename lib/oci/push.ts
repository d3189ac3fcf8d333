/**
 * Pushing an image (or index) and its blobs: blobs the registry already has are skipped after
 * a HEAD, blobs that live in a sibling repository are mounted instead of uploaded, so a
 * re-push sends no blob bytes and only the manifests travel.
 *
 * @module
 */
import type { BlobStore } from "./blob-store.ts";
import { parseManifest, type Descriptor } from "./manifest.ts";
import { forEachLimit } from "./image.ts";
import type { RegistryClient } from "./registry-client.ts";

/** Where blob content comes from when pushing: a store, a layout, a docker-save tar... */
export interface BlobSource {
  /** Small blobs (manifests, configs) as bytes. */
  bytes(digest: string): Promise<Uint8Array>;
  /** Any blob, as something `RegistryClient.pushBlob` streams (a file, a file slice, bytes). */
  content(desc: Descriptor): Promise<Uint8Array | Blob | { path: string }>;
}

/** A {@link BlobSource} reading a {@link BlobStore}. */
export function storeSource(store: BlobStore): BlobSource {
  return {
    bytes: (digest) => store.read(digest),
    content: async (desc) => await store.open(desc.digest),
  };
}

/**
 * A {@link BlobSource} reading another registry repository, for copying images between
 * registries: manifests are fetched by digest (verified by the client), blobs are pulled into
 * `staging` (verified, resumable) only when the destination lacks them.
 */
export function registrySource(
  client: RegistryClient,
  repo: string,
  staging: BlobStore,
  opts: { signal?: AbortSignal; onFetched?: (bytes: number) => void } = {},
): BlobSource {
  return {
    bytes: async (digest) => {
      const m = await client.getManifest(repo, digest, { signal: opts.signal });
      opts.onFetched?.(m.bytes.byteLength);
      return m.bytes;
    },
    content: async (desc) => {
      const { fetched } = await staging.pull(client, repo, desc, { signal: opts.signal });
      opts.onFetched?.(fetched);
      return await staging.open(desc.digest);
    },
  };
}

/** Options of the push functions. */
export interface PushOptions {
  /** Repositories on the same registry to mount blobs from before uploading them. */
  mountFrom?: string[];
  /** Upload in PATCH chunks of this size (default: one PUT per blob). */
  chunkSize?: number;
  /** Parallel blob uploads (default 3). */
  concurrency?: number;
  /** Bytes uploaded so far, and the total of blobs that needed uploading so far. */
  onProgress?: (uploaded: number) => void;
  signal?: AbortSignal;
}

/** What a push did. */
export interface PushResult {
  /** Digest of the top manifest or index pushed. */
  digest: string;
  mediaType: string;
  /** Blob bytes actually uploaded (0 on a re-push). */
  uploadedBytes: number;
  uploaded: number;
  mounted: number;
  /** Blobs the registry already had. */
  skipped: number;
}

/**
 * Pushes blobs the registry lacks: HEAD first, then a mount from `mountFrom`, then an upload.
 *
 * @returns Counts for the caller's report.
 */
export async function pushBlobs(client: RegistryClient, repo: string, blobs: Descriptor[], source: BlobSource, opts: PushOptions = {}): Promise<Omit<PushResult, "digest" | "mediaType">> {
  const stats = { uploadedBytes: 0, uploaded: 0, mounted: 0, skipped: 0 };
  const unique = [...new Map(blobs.map((b) => [b.digest, b])).values()];
  await forEachLimit(unique, opts.concurrency ?? 3, async (b) => {
    if ((await client.blobExists(repo, b.digest, { signal: opts.signal })) !== undefined) {
      stats.skipped++;
      return;
    }
    for (const from of opts.mountFrom ?? []) {
      if (from === repo) continue;
      if (await client.mountBlob(repo, b.digest, from, { signal: opts.signal })) {
        stats.mounted++;
        return;
      }
    }
    let before = 0;
    await client.pushBlob(repo, await source.content(b), {
      digest: b.digest,
      size: b.size,
      chunkSize: opts.chunkSize,
      signal: opts.signal,
      onProgress: (sent) => {
        stats.uploadedBytes += sent - before;
        before = sent;
        opts.onProgress?.(stats.uploadedBytes);
      },
    });
    stats.uploaded++;
  });
  return stats;
}

/**
 * Pushes a manifest or index whose bytes and blobs `source` holds, children first, then tags
 * it as `ref` (a tag, or its own digest).
 *
 * @throws {RegistryError | BlobNotFoundError | InvalidManifestError}
 */
export async function pushManifest(client: RegistryClient, repo: string, ref: string, manifestBytes: Uint8Array, source: BlobSource, opts: PushOptions = {}): Promise<PushResult> {
  const parsed = parseManifest(manifestBytes);
  const total = { uploadedBytes: 0, uploaded: 0, mounted: 0, skipped: 0 };
  const add = (s: typeof total) => {
    total.uploadedBytes += s.uploadedBytes;
    total.uploaded += s.uploaded;
    total.mounted += s.mounted;
    total.skipped += s.skipped;
  };
  if (parsed.kind === "index") {
    for (const child of parsed.index.manifests) {
      const r = await pushManifest(client, repo, child.digest, await source.bytes(child.digest), source, opts);
      add(r);
    }
  } else {
    add(await pushBlobs(client, repo, [parsed.manifest.config, ...parsed.manifest.layers], source, opts));
  }
  const digest = await client.putManifest(repo, ref, manifestBytes, parsed.mediaType, { signal: opts.signal });
  return { digest, mediaType: parsed.mediaType, ...total };
}

/**
 * Pushes an image (or index) held in a BlobStore to `repo:ref`.
 *
 * @example
 * ```ts
 * const r = await pushImageFromStore(client, "main/app", "v2", store, manifestDigest, { mountFrom: ["main/base"] });
 * r.uploadedBytes; // 0 when the registry already had every blob
 * ```
 * @throws {RegistryError | BlobNotFoundError}
 */
export async function pushImageFromStore(client: RegistryClient, repo: string, ref: string, store: BlobStore, manifestDigest: string, opts: PushOptions = {}): Promise<PushResult> {
  return await pushManifest(client, repo, ref, await store.read(manifestDigest), storeSource(store), opts);
}
