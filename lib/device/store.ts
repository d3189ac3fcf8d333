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
 * Two writers share the store: the compose update (fetch, then a prune to its target) and the
 * Kanto agent (pull, then load into the engine), in one process (`fioup daemon`) or two (`fioup
 * update` beside a daemon). A writer that needs blobs a prune must not take holds a
 * {@link DeviceBlobStore.lease}: `leases/<name>.lock` names its process the way lib/fs/pid-lock
 * does (PID, start time in ticks since boot, boot id: a recycled PID or another boot does not
 * hold it, and a clock step such as NTP's first one on a device without an RTC changes nothing),
 * `leases/<name>.json` lists its digests. {@link DeviceBlobStore.prune}
 * keeps what live leases name (their blobs, a leased layer's rebuilt tar, their partials in
 * ingest/) and deletes the leases of dead processes with nothing else: a crash leaks nothing
 * past the next prune. A live owner's lease is honoured however old it is: it is released in a
 * `finally` when the work ends, and a pull on a slow link or a long-running daemon is no reason
 * to take blobs away from under it. A prune holds `prune.lock` while it reads leases and
 * deletes (a second prune meanwhile does nothing); {@link BlobLease.add} returns only once its digests are on disk and no prune that
 * could have missed them runs, so a blob found present after `add` stays.
 *
 * @module
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { tempFileOf, writeFileAtomicSync } from "../fs/atomic-write.ts";
import { acquireLock, LockedError, lockHolder, processStartMs, type Lock } from "../fs/pid-lock.ts";
import { BlobStore, type PullBlobOptions } from "../oci/blob-store.ts";
import { digestBytes, parseDigest, tryParseDigest, DigestMismatchError } from "../oci/digest.ts";
import type { RegistryClient } from "../oci/registry-client.ts";

/** Blobs one piece of work needs kept while it runs; see {@link DeviceBlobStore.lease}. */
export interface BlobLease {
  /** Adds digests; resolves once they are on disk and no prune that could have missed them is running. */
  add(digests: Iterable<string>): Promise<void>;
  /** Ends the lease (idempotent): the next prune may take its blobs. */
  release(): void;
}

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

  /**
   * The unpacked size of layer `digest` read from the device's own copy, without a request: a
   * layer rebuilt from a delta is held as its uncompressed tar, whose size it is; a gzip layer
   * (`gzip`) declares it in its trailer (ISIZE: the size modulo 4 GiB). `undefined` when the
   * layer is not stored, or is neither.
   */
  async storedUnpackedSize(digest: string, gzip: boolean): Promise<number | undefined> {
    const holder = this.holder(digest);
    if (holder === undefined) return undefined;
    const file = Bun.file(this.path(holder));
    if (holder !== digest) return file.size;
    if (!gzip || file.size < 18) return undefined; // 18: an empty gzip member
    const tail = new Uint8Array(await file.slice(file.size - 4, file.size).arrayBuffer());
    return tail.byteLength === 4 ? new DataView(tail.buffer).getUint32(0, true) : undefined;
  }

  /** A lazy handle on a blob's content, following a rebuilt layer's alias. @throws {BlobNotFoundError} */
  async open(digest: string): Promise<ReturnType<typeof Bun.file>> {
    return await this.lib.open(this.holder(digest) ?? digest);
  }

  /** Reads a whole blob (following a rebuilt layer's alias). @throws {BlobNotFoundError} */
  async read(digest: string): Promise<Uint8Array> {
    return new Uint8Array(await (await this.open(digest)).arrayBuffer());
  }

  /**
   * Checks the stored copy of `digest` (a rebuilt layer's uncompressed tar, through its alias)
   * against its digest, and removes it if it no longer matches, so the next fetch gets it again.
   * Returns whether it was damaged (false when it is not stored at all).
   */
  async removeIfDamaged(digest: string): Promise<boolean> {
    const holder = this.holder(digest);
    if (holder === undefined || (await this.lib.intact(holder))) return false;
    await this.lib.remove(holder);
    if (holder !== digest) rmSync(this.aliasPath(digest), { force: true });
    return true;
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
   * the rename into blobs/, network errors retried. Returns the bytes that came
   * over the network in this call: a resumed partial's bytes came in an earlier
   * one and are not counted again ({@link partialSize} before the call says
   * them); a committed blob counts 0.
   *
   * @throws {DigestMismatchError | BlobTooLargeError | RegistryError | IncompleteBlobError}
   */
  async pull(
    reg: RegistryClient,
    repo: string,
    desc: { digest: string; size: number },
    opts: { signal?: AbortSignal; onProgress?: (done: number) => void; onReceived?: PullBlobOptions["onReceived"]; stallTimeoutMs?: number; onRetry?: PullBlobOptions["onRetry"] } = {},
  ): Promise<number> {
    if (this.has(desc.digest)) return 0;
    const { fetched } = await this.lib.pull(reg, repo, desc, {
      signal: opts.signal,
      onProgress: (done) => opts.onProgress?.(done),
      ...(opts.onReceived ? { onReceived: opts.onReceived } : {}),
      ...(opts.stallTimeoutMs !== undefined ? { stallTimeoutMs: opts.stallTimeoutMs } : {}),
      ...(opts.onRetry ? { onRetry: opts.onRetry } : {}),
    });
    return fetched;
  }

  /**
   * Holds blobs against {@link prune} for this process (the module comment says how). `owner`
   * names the work in the file name, for whoever looks at leases/.
   *
   * @example
   * ```ts
   * const lease = store.lease("agent pull");
   * try {
   *   await lease.add([desc.digest]);
   *   await store.pull(registry, "factory/app", desc);
   * } finally {
   *   lease.release();
   * }
   * ```
   */
  lease(owner: string): BlobLease {
    const dir = join(this.root, "leases");
    const base = join(dir, `${owner.replace(/[^A-Za-z0-9_-]+/g, "_").slice(0, 40)}-${process.pid}-${crypto.randomUUID().slice(0, 8)}`);
    const [lockPath, listPath, pruneLock] = [`${base}.lock`, `${base}.json`, join(this.root, "prune.lock")];
    const digests = new Set<string>();
    let lock: Lock | undefined;
    let released = false;
    const pruning = () => {
      const holder = lockHolder(pruneLock);
      return holder !== undefined && holder !== process.pid; // this process's prune is sync: not midway
    };
    return {
      add: async (more) => {
        for (const d of more) digests.add(parseDigest(d).value);
        // A prune in another process may have read leases/ before these writes (or taken a lock
        // file it caught half written for a dead process's): once none runs, the files must be there.
        while (!released) {
          if (lockHolder(lockPath) !== process.pid) {
            mkdirSync(dir, { recursive: true });
            lock = acquireLock(lockPath);
          }
          writeFileAtomicSync(listPath, JSON.stringify({ owner, digests: [...digests] }));
          while (pruning()) await Bun.sleep(20);
          if (lockHolder(lockPath) === process.pid && existsSync(listPath)) return;
        }
        throw new Error(`Cannot add to blob lease ${base}: released`);
      },
      release: () => {
        released = true;
        rmSync(listPath, { force: true });
        lock?.release();
      },
    };
  }

  /** Digests that live leases hold; deletes the leases of processes that are gone. */
  private leased(): Set<string> {
    const dir = join(this.root, "leases");
    const held = new Set<string>();
    if (!existsSync(dir)) return held;
    const names = readdirSync(dir);
    const live = new Set(names.filter((n) => n.endsWith(".lock") && lockHolder(join(dir, n)) !== undefined).map((n) => n.slice(0, -5)));
    for (const n of names) {
      const m = /^(.+)\.(lock|json)$/.exec(n);
      if (!m || n.startsWith(".")) {
        // A temp file of an atomic write: its writer's, unless that process is gone.
        const tmp = tempFileOf(n);
        if (tmp && processStartMs(tmp.pid) === undefined) rmSync(join(dir, n), { force: true });
        continue;
      }
      if (!live.has(m[1]!)) {
        rmSync(join(dir, n), { force: true }); // its process is gone (a .json alone: it is being released)
        continue;
      }
      if (m[2] !== "json") continue;
      try {
        const { digests } = JSON.parse(readFileSync(join(dir, n), "utf8")) as { digests?: unknown };
        for (const d of Array.isArray(digests) ? digests : []) if (tryParseDigest(d)) held.add(d as string);
      } catch {
        // released meanwhile
      }
    }
    return held;
  }

  /**
   * Removes the store's work folders (ingest/ for partial downloads, leases/) where they are empty:
   * a store handed on as it is (an offline bundle, `gateway export`) then holds only its content.
   * One still in use (not empty) stays.
   */
  tidy(): void {
    for (const dir of [this.lib.ingestDir, join(this.root, "leases")]) {
      try {
        rmdirSync(dir);
      } catch {}
    }
  }

  /**
   * Deletes every blob neither in `keep` nor leased (a kept layer keeps its rebuilt tar) and
   * every partial download nobody leases; returns what it freed. While another process prunes the
   * store it does nothing (`skipped`): waiting would block this process's event loop (prune is
   * synchronous), and what it leaves is taken by the next prune.
   */
  prune(keep: Set<string>): { removed: number; bytes: number; skipped?: true } {
    if (!existsSync(this.root)) return { removed: 0, bytes: 0 };
    let lock: Lock;
    try {
      lock = acquireLock(join(this.root, "prune.lock"));
    } catch (e) {
      if (e instanceof LockedError) return { removed: 0, bytes: 0, skipped: true };
      throw e;
    }
    try {
      return this.pruneLocked(keep);
    } finally {
      lock.release();
    }
  }

  private pruneLocked(keep: Set<string>): { removed: number; bytes: number } {
    let removed = 0;
    let bytes = 0;
    const leased = this.leased();
    keep = new Set([...keep, ...leased]);
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
    // A leased or kept blob's write in flight is its (`.<hex>.<pid>-<id>.tmp`), while its writer lives.
    const kept = (alg: string, name: string) => {
      const tmp = tempFileOf(name);
      return tmp ? keep.has(`${alg}:${tmp.target}`) && processStartMs(tmp.pid) !== undefined : keep.has(`${alg}:${name}`);
    };
    const base = join(this.root, "blobs");
    if (existsSync(base)) {
      for (const alg of readdirSync(base)) {
        for (const name of readdirSync(join(base, alg))) {
          if (kept(alg, name)) continue;
          const p = join(base, alg, name);
          try {
            bytes += statSync(p).size;
          } catch {
            continue; // renamed or removed by its writer meanwhile
          }
          rmSync(p, { force: true });
          if (!name.startsWith(".")) removed++;
        }
      }
    }
    const ingest = this.lib.ingestDir;
    const leasedHex = new Set([...leased].map((d) => parseDigest(d).hex));
    if (existsSync(ingest)) {
      for (const name of readdirSync(ingest)) {
        if (!leasedHex.has(name.split(".")[0]!)) rmSync(join(ingest, name), { recursive: true, force: true });
      }
    }
    return { removed, bytes };
  }
}
