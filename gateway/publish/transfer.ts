/**
 * Moving blobs and manifests into the factory registry without sending what
 * is already there: blobs go through lib/oci's pushBlobs (HEAD first, so
 * re-publishing the same commit pushes 0 bytes; mounted when they live in the
 * same registry; otherwise uploaded), manifests are put only when the
 * registry does not already hold those bytes under that tag, except on the
 * gateway's own registry, where a manifest reused is put again (`refreshReused`).
 * A dry run writes nothing. Counts what it actually pushed, for the report.
 *
 * @module
 */
import { join } from "node:path";
import { BlobStore } from "../../lib/oci/blob-store.ts";
import type { Descriptor } from "../../lib/oci/manifest.ts";
import { pushBlobs, type BlobSource } from "../../lib/oci/push.ts";
import type { RegistryClient } from "../../lib/oci/registry-client.ts";

/** Running totals of what a publish sent. */
export class PushStats {
  bytesPushed = 0;
  blobsPushed = 0;
  blobsPresent = 0;
  blobsMounted = 0;
  manifestsPushed = 0;
}

/** Where pushes go, plus what a dry run or the totals need. */
export interface Destination {
  client: RegistryClient;
  stats: PushStats;
  /** When true nothing is written to the registry. */
  dryRun: boolean;
  /**
   * Put a manifest the registry already holds again (not counted as pushed). For the gateway's own
   * registry: `gateway registry gc --untargeted` spares manifests put within its grace period
   * (gateway/registry/untargeted.ts), and a publish re-publishing a version no target names any
   * more reuses its manifests, which gc would otherwise remove (and the blobs only they reference)
   * before the new targets name them. A put refreshes the manifest, and the walk from it keeps the
   * images the app pins. An external registry has no such gc: a HEAD is enough there.
   */
  refreshReused?: boolean;
  /** For blobs staged while copying from another registry. */
  tmpDir: string;
  /** Bytes sent so far into `repo`, of at most `total` (blobs the registry has are not sent), as an upload goes. */
  onProgress?: (repo: string, sent: number, total: number) => void;
}

const staging = new WeakMap<Destination, BlobStore>();

/** The store (under `dst.tmpDir`) through which blobs copied from another registry pass, verified. */
export function stagingStore(dst: Destination): BlobStore {
  let s = staging.get(dst);
  if (!s) staging.set(dst, (s = new BlobStore(join(dst.tmpDir, "staging"))));
  return s;
}

/** A {@link BlobSource} over content at hand: bytes in memory or files on disk, by digest. */
export function localSource(contents: Map<string, Uint8Array | { path: string }>): BlobSource {
  const get = (digest: string) => {
    const c = contents.get(digest);
    if (!c) throw new Error(`Cannot push blob ${digest}: not among the files publish prepared`);
    return c;
  };
  return {
    bytes: async (digest) => {
      const c = get(digest);
      return c instanceof Uint8Array ? c : new Uint8Array(await Bun.file(c.path).arrayBuffer());
    },
    content: async (desc) => get(desc.digest),
  };
}

/**
 * Makes sure `repo` in the destination has every blob of `blobs`, taking the
 * missing ones from `source` (or mounting them from `mountFrom` repositories
 * of the same registry).
 */
export async function ensureBlobs(dst: Destination, repo: string, blobs: Descriptor[], source: BlobSource, opts: { mountFrom?: string[] } = {}): Promise<void> {
  if (dst.dryRun) return;
  const total = blobs.reduce((n, b) => n + b.size, 0);
  const r = await pushBlobs(dst.client, repo, blobs, source, { ...opts, ...(dst.onProgress ? { onProgress: (sent: number) => dst.onProgress!(repo, sent, total) } : {}) });
  dst.stats.bytesPushed += r.uploadedBytes;
  dst.stats.blobsPushed += r.uploaded;
  dst.stats.blobsMounted += r.mounted;
  dst.stats.blobsPresent += r.skipped;
}

/**
 * Puts a manifest by digest (and under `tag` if given) unless the registry
 * already has exactly those bytes there (and `dst.refreshReused` is not set).
 */
export async function ensureManifest(
  dst: Destination,
  repo: string,
  m: { bytes: Uint8Array; mediaType: string; digest: string },
  tag?: string,
): Promise<void> {
  if (dst.dryRun) return;
  for (const ref of tag ? [tag] : [m.digest]) {
    const have = await dst.client.headManifest(repo, ref);
    if (have?.digest === m.digest) {
      if (dst.refreshReused) await dst.client.putManifest(repo, ref, m.bytes, m.mediaType);
      continue;
    }
    await dst.client.putManifest(repo, ref, m.bytes, m.mediaType);
    dst.stats.manifestsPushed++;
    dst.stats.bytesPushed += m.bytes.byteLength;
  }
}
