/**
 * The device's content-addressed store (`<reset_apps_root>/blobs/sha256/<hex>`,
 * partial downloads in `ingest/`): what fetch writes and the runtime reads.
 * Nothing lands under blobs/ unverified: downloads go to ingest/, are hashed,
 * then renamed into place.
 *
 * @module
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { digestBytes, digestFile, parseDigest, DigestMismatchError } from "../../lib/oci/digest.ts";
import type { RegistryClient } from "../../lib/oci/registry-client.ts";
import { writeFileAtomic } from "../atomic-write.ts";

export class BlobSizeError extends Error {
  override name = "BlobSizeError";
}

export class DeviceBlobStore {
  constructor(readonly root: string) {}

  path(digest: string): string {
    const d = parseDigest(digest);
    return join(this.root, "blobs", d.algorithm, d.hex);
  }

  ingestPath(digest: string): string {
    const d = parseDigest(digest);
    return join(this.root, "ingest", `${d.algorithm}-${d.hex}`);
  }

  has(digest: string): boolean {
    return existsSync(this.path(digest));
  }

  /** Bytes of a partial download already on disk. */
  partialSize(digest: string): number {
    try {
      return statSync(this.ingestPath(digest)).size;
    } catch {
      return 0;
    }
  }

  /** Stores bytes already in memory (manifests) after checking their digest. */
  putBytes(digest: string, bytes: Uint8Array): void {
    const actual = digestBytes(bytes, parseDigest(digest).algorithm);
    if (actual !== digest) throw new DigestMismatchError(`Cannot store ${digest}`, digest, actual);
    if (!this.has(digest)) writeFileAtomic(this.path(digest), bytes);
  }

  async readBytes(digest: string): Promise<Uint8Array> {
    return new Uint8Array(await Bun.file(this.path(digest)).arrayBuffer());
  }

  /**
   * Downloads one blob with HTTP Range resume from a partial in ingest/,
   * checks size and digest, and commits it by rename. Returns the bytes of the
   * blob that came over the network, in this run or in an interrupted earlier
   * one (a resumed partial counts once; a committed blob counts 0).
   *
   * @throws {DigestMismatchError | BlobSizeError | RegistryError}
   */
  async pull(
    reg: RegistryClient,
    repo: string,
    desc: { digest: string; size: number },
    opts: { signal?: AbortSignal; onProgress?: (done: number) => void } = {},
  ): Promise<number> {
    if (this.has(desc.digest)) return 0;
    mkdirSync(join(this.root, "ingest"), { recursive: true });
    const ingest = this.ingestPath(desc.digest);
    let have = this.partialSize(desc.digest);
    if (have > desc.size) {
      rmSync(ingest, { force: true });
      have = 0;
    }
    let transferred = 0;
    let resumed = have;
    if (have < desc.size) {
      const res = await reg.fetchBlob(repo, desc.digest, { start: have || undefined, signal: opts.signal });
      if (have > 0 && res.status !== 206) have = resumed = 0; // the registry ignored Range: start over
      const fh = await open(ingest, have > 0 ? "a" : "w");
      try {
        let done = have;
        const body = res.body;
        if (!body) throw new BlobSizeError(`Cannot fetch blob ${desc.digest}: empty response`);
        for await (const chunk of body) {
          if (done + chunk.byteLength > desc.size) {
            throw new BlobSizeError(`Cannot fetch blob ${desc.digest}: the registry sent more than the ${desc.size} bytes the manifest declares`);
          }
          await fh.write(chunk);
          done += chunk.byteLength;
          transferred += chunk.byteLength;
          opts.onProgress?.(done);
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    const size = (await stat(ingest)).size;
    if (size !== desc.size) throw new BlobSizeError(`Cannot fetch blob ${desc.digest}: got ${size} of ${desc.size} bytes`);
    const { digest } = await digestFile(ingest, { algorithm: parseDigest(desc.digest).algorithm });
    if (digest !== desc.digest) {
      rmSync(ingest, { force: true }); // never resume from bad bytes
      throw new DigestMismatchError(`Cannot fetch blob ${desc.digest} from ${reg.registry}/${repo}`, desc.digest, digest);
    }
    mkdirSync(join(this.root, "blobs", parseDigest(desc.digest).algorithm), { recursive: true });
    renameSync(ingest, this.path(desc.digest));
    return transferred + resumed;
  }

  /** Deletes every blob not in `keep` and every partial download; returns bytes freed. */
  prune(keep: Set<string>): { removed: number; bytes: number } {
    let removed = 0;
    let bytes = 0;
    const base = join(this.root, "blobs");
    if (!existsSync(base)) return { removed, bytes };
    for (const alg of readdirSync(base)) {
      for (const hex of readdirSync(join(base, alg))) {
        if (keep.has(`${alg}:${hex}`)) continue;
        const p = join(base, alg, hex);
        bytes += statSync(p).size;
        rmSync(p, { force: true });
        removed++;
      }
    }
    rmSync(join(this.root, "ingest"), { recursive: true, force: true });
    return { removed, bytes };
  }
}
