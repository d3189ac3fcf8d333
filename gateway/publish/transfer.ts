/**
 * Moving blobs and manifests into the factory registry without sending what
 * is already there: every blob is checked with HEAD first (so re-publishing
 * the same commit pushes 0 bytes), mounted when it lives in the same
 * registry, otherwise streamed through a temp file and verified. Counts the
 * bytes it actually pushed, for the report.
 *
 * @module
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { digestFile, DigestMismatchError } from "../../lib/oci/digest.ts";
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
  /** For temp files of streamed blobs. */
  tmpDir: string;
}

let tmpSeq = 0;

/**
 * Makes sure `repo` in the destination has blob `digest`, pushing it from
 * `source` (bytes, a file, or a registry repository) only if it is missing.
 */
export async function ensureBlob(
  dst: Destination,
  repo: string,
  blob: { digest: string; size: number },
  source: Uint8Array | { path: string } | { client: RegistryClient; repo: string },
): Promise<void> {
  if (dst.dryRun) return;
  if ((await dst.client.blobExists(repo, blob.digest)) !== undefined) {
    dst.stats.blobsPresent++;
    return;
  }
  if ("client" in source && source.client.registry === dst.client.registry && source.client.baseUrl === dst.client.baseUrl) {
    if (await dst.client.mountBlob(repo, blob.digest, source.repo)) {
      dst.stats.blobsMounted++;
      return;
    }
  }
  if ("client" in source) {
    const tmp = join(dst.tmpDir, `blob-${process.pid}-${++tmpSeq}`);
    try {
      const res = await source.client.fetchBlob(source.repo, blob.digest);
      await Bun.write(tmp, res);
      const got = await digestFile(tmp);
      if (got.digest !== blob.digest) {
        throw new DigestMismatchError(`Cannot copy blob ${blob.digest} from ${source.client.registry}/${source.repo}`, blob.digest, got.digest);
      }
      await dst.client.pushBlob(repo, { path: tmp }, { digest: blob.digest, size: got.size });
      dst.stats.bytesPushed += got.size;
    } finally {
      await rm(tmp, { force: true });
    }
  } else {
    await dst.client.pushBlob(repo, source, { digest: blob.digest, size: blob.size });
    dst.stats.bytesPushed += blob.size;
  }
  dst.stats.blobsPushed++;
}

/**
 * Puts a manifest by digest (and under `tag` if given) unless the registry
 * already has exactly those bytes there.
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
    if (have?.digest === m.digest) continue;
    await dst.client.putManifest(repo, ref, m.bytes, m.mediaType);
    dst.stats.manifestsPushed++;
    dst.stats.bytesPushed += m.bytes.byteLength;
  }
}
