/**
 * The device's content-addressed store (`<reset_apps_root>/blobs/sha256/<hex>`,
 * partial downloads in `ingest/`): what fioup's fetch and preload write, and
 * fioup's runtime reads. Part of the on-device layout both must agree on.
 * Downloads are lib/oci's BlobStore (nothing lands under blobs/ unverified);
 * this adds what the update steps need: sync lookups, in-memory manifests,
 * byte accounting across interrupted runs, and pruning.
 *
 * A layer that came as a delta (lib/oci/delta.ts) is kept as its uncompressed tar, stored
 * under its own digest (the diff_id), with `layers/<alg>/<hex of the layer digest>` holding
 * that diff_id: {@link DeviceBlobStore.has}, {@link DeviceBlobStore.open} and
 * {@link DeviceBlobStore.prune} follow it, so the runtime loads either form (docker load takes
 * both) and nothing under blobs/ is ever named by a digest it does not hash to.
 *
 * @module
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomicSync } from "../fs/atomic-write.ts";
import { BlobStore } from "../oci/blob-store.ts";
import { digestBytes, parseDigest, DigestMismatchError } from "../oci/digest.ts";
import type { RegistryClient } from "../oci/registry-client.ts";

/**
 * The device's blob store.
 *
 * @example
 * ```ts
 * const store = new DeviceBlobStore(DEFAULT_DEVICE_PATHS.resetAppsRoot);
 * if (!store.has(desc.digest)) await store.pull(registry, "factory/app", desc);
 * ```
 */
export class DeviceBlobStore {
  private readonly lib: BlobStore;

  constructor(readonly root: string) {
    this.lib = new BlobStore(root);
  }

  path(digest: string): string {
    return this.lib.path(digest);
  }

  ingestPath(digest: string): string {
    return this.lib.partialPath(digest);
  }

  has(digest: string): boolean {
    return this.holder(digest) !== undefined;
  }

  private aliasPath(digest: string): string {
    const d = parseDigest(digest);
    return join(this.root, "layers", d.algorithm, d.hex);
  }

  /**
   * The digest of the stored blob holding `digest`'s content: `digest` itself, or for a layer
   * rebuilt from a delta, its uncompressed tar (the diff_id); `undefined` if neither is stored.
   */
  holder(digest: string): string | undefined {
    if (existsSync(this.path(digest))) return digest;
    let diffId: string;
    try {
      diffId = readFileSync(this.aliasPath(digest), "utf8").trim();
      parseDigest(diffId);
    } catch {
      return undefined;
    }
    return existsSync(this.path(diffId)) ? diffId : undefined;
  }

  /** A lazy handle on a blob's content, following a rebuilt layer's alias. @throws {BlobNotFoundError} */
  async open(digest: string): Promise<ReturnType<typeof Bun.file>> {
    return await this.lib.open(this.holder(digest) ?? digest);
  }

  /** Reads a whole blob (following a rebuilt layer's alias). @throws {BlobNotFoundError} */
  async read(digest: string): Promise<Uint8Array> {
    return new Uint8Array(await (await this.open(digest)).arrayBuffer());
  }

  /** A scratch path for rebuilding layer `digest`, on the store's filesystem. */
  rebuildPath(digest: string): string {
    return join(this.lib.ingestDir, `${parseDigest(digest).hex}.rebuild`);
  }

  /**
   * Commits a layer rebuilt uncompressed at `tmpPath` (checked to hash to `diffId`) and records
   * that it stands for layer `digest`. @throws {DigestMismatchError}
   */
  async putRebuiltLayer(digest: string, tmpPath: string, diffId: string): Promise<void> {
    await this.lib.commit(tmpPath, diffId);
    writeFileAtomicSync(this.aliasPath(digest), diffId);
  }

  /** Bytes of a partial download already on disk. */
  partialSize(digest: string): number {
    try {
      return statSync(this.ingestPath(digest)).size;
    } catch {
      return 0;
    }
  }

  /** Stores bytes already in memory (manifests) after checking their digest. @throws {DigestMismatchError} */
  putBytes(digest: string, bytes: Uint8Array): void {
    const actual = digestBytes(bytes, parseDigest(digest).algorithm);
    if (actual !== digest) throw new DigestMismatchError(`Cannot store ${digest}`, digest, actual);
    if (!this.has(digest)) writeFileAtomicSync(this.path(digest), bytes);
  }

  async readBytes(digest: string): Promise<Uint8Array> {
    return new Uint8Array(await Bun.file(this.path(digest)).arrayBuffer());
  }

  /**
   * Downloads one blob with lib/oci's BlobStore.pull: HTTP Range resume from a
   * partial in ingest/, hashed while streaming, size and digest checked before
   * the rename into blobs/, network errors retried. Returns the bytes of the
   * blob that came over the network, in this run or in an interrupted earlier
   * one (a resumed partial counts once; a committed blob counts 0).
   *
   * @throws {DigestMismatchError | BlobTooLargeError | RegistryError | IncompleteBlobError}
   */
  async pull(
    reg: RegistryClient,
    repo: string,
    desc: { digest: string; size: number },
    opts: { signal?: AbortSignal; onProgress?: (done: number) => void; onReceived?: (bytes: number) => void; stallTimeoutMs?: number } = {},
  ): Promise<number> {
    if (this.has(desc.digest)) return 0;
    const resumed = this.partialSize(desc.digest);
    const { fetched } = await this.lib.pull(reg, repo, desc, {
      signal: opts.signal,
      onProgress: (done) => opts.onProgress?.(done),
      ...(opts.onReceived ? { onReceived: opts.onReceived } : {}),
      ...(opts.stallTimeoutMs !== undefined ? { stallTimeoutMs: opts.stallTimeoutMs } : {}),
    });
    // If the registry ignored Range the partial was refetched whole: count the blob once.
    return Math.min(desc.size, fetched + resumed);
  }

  /** Deletes every blob not in `keep` (a kept layer keeps its rebuilt tar) and every partial download; returns bytes freed. */
  prune(keep: Set<string>): { removed: number; bytes: number } {
    let removed = 0;
    let bytes = 0;
    keep = new Set(keep);
    const aliases = join(this.root, "layers");
    if (existsSync(aliases)) {
      for (const alg of readdirSync(aliases)) {
        for (const hex of readdirSync(join(aliases, alg))) {
          const held = keep.has(`${alg}:${hex}`) ? this.holder(`${alg}:${hex}`) : undefined;
          if (held) keep.add(held);
          else rmSync(join(aliases, alg, hex), { force: true });
        }
      }
    }
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
