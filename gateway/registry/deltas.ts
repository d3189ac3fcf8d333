/**
 * Layer deltas for the embedded registry: `GET /v2/<name>/deltas?from=<layer>&to=<layer>`
 * answers a {@link DeltaDescriptor} (or 404), and the delta itself is then an ordinary blob of
 * that repository (`GET /v2/<name>/blobs/<delta digest>`, Range and byte counting included).
 *
 * A delta is `zstd --patch-from=<from tar> --long=<w> <to tar>` over the two layers'
 * uncompressed tars (docs/deltas.md says why this method). It is made on demand, once per
 * pair, and kept:
 *
 * ```
 * <root>/deltas/<from hex>-<to hex>.json   the outcome: {"descriptor": ...} or {"refused": why}
 * <root>/deltas/<from hex>-<to hex>.lock   held while one process computes the pair
 * <root>/deltas/blobs/<delta hex>          marks a stored blob as a delta (for byte counting)
 * <root>/blobs/sha256/<delta hex>          the delta, linked into the repository
 * ```
 *
 * Only pairs of layers are made: both digests must be layers of image manifests stored in the
 * repository (read once per manifest, whose content never changes), so a caller that may pull
 * cannot name configs, deltas or blobs no image uses, and the pairs are those of the app's layers.
 *
 * Concurrent requests for one pair wait for one computation: in one process through a shared
 * promise, across replicas sharing the registry directory through the lock file (created with
 * O_EXCL; one older than the time budget plus a minute is taken to be a crashed holder's).
 * Different pairs share `maxConcurrent` computations per process (each unpacks two layers to
 * disk and runs a zstd of hundreds of MB), with `maxQueued` more waiting; a pair asked beyond
 * that is refused at once (not remembered), and one that waits `maxWaitMs` without a turn is
 * refused then: the device fetches the layer whole, as for any refusal, and a later request makes
 * the delta. An outcome already stored takes no slot.
 * Budgets: a delta is kept only if it is at most `maxRatio` of the target layer's blob, zstd is
 * stopped after `timeoutMs`, layers over `maxLayerBytes` unpacked are not tried; each refusal is
 * remembered, so a pair is never computed twice, except when zstd is missing or fails (the
 * host's state, not the pair's: it is tried again). Deltas are unreferenced blobs, so registry gc
 * removes them after its grace period; the next request then makes the delta again.
 *
 * @module
 */
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, open, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { sizeText } from "../../lib/cli/bytes.ts";
import { writeFileAtomic } from "../../lib/fs/atomic-write.ts";
import { sleep } from "../../lib/net/backoff.ts";
import { DELTA_MEDIA_TYPE, deltaWindowLog, MAX_DELTA_BASE_BYTES, type DeltaDescriptor } from "../../lib/oci/delta.ts";
import { parseManifest } from "../../lib/oci/manifest.ts";
import { sniffCompression } from "../../lib/oci/media-types.ts";
import { RegistryRequestError } from "./errors.ts";
import { checkDigest, isSha256Digest } from "./_names.ts";
import { fileSize, hashFile, listDir, readTextOrUndefined } from "./_fs.ts";
import type { RegistryStorage } from "./storage.ts";

/** Budgets and tools of {@link LayerDeltas}. */
export interface DeltaOptions {
  /** Keep a delta only if it is at most this fraction of the target layer's blob size; default 0.75. */
  maxRatio?: number;
  /** Stop zstd after this long and refuse the pair; default 120 s. */
  timeoutMs?: number;
  /** Do not try layers larger than this unpacked; default the device's dictionary limit (512 MiB). */
  maxLayerBytes?: number;
  /** zstd compression level; default 3 (higher levels cost much more time for little gain with --patch-from). */
  level?: number;
  /** The zstd binary; default "zstd" on PATH. */
  zstd?: string;
  /** Pairs computed at once in this process (unpacking both layers and running zstd); default 2. */
  maxConcurrent?: number;
  /** Pairs waiting for one of those; a pair asked beyond them is refused at once (the device fetches the layer whole); default 4. */
  maxQueued?: number;
  /** How long a pair waits for its turn before it is refused as busy (the device then fetches the layer whole); default 30 s. */
  maxWaitMs?: number;
}

/** The outcome of a pair, as kept on disk. */
export type DeltaOutcome = { descriptor: DeltaDescriptor } | { refused: string };

/** How a refusal for want of the zstd command begins (the device prints it). */
const NO_ZSTD = "the gateway host cannot run zstd";
/** How a refusal for a zstd run that failed begins. */
const ZSTD_FAILED = "zstd failed on the gateway host";

/**
 * What {@link LayerDeltas.compute} found. A refusal that comes from the host's state, not the
 * pair's (zstd missing, too old for --patch-from, killed, out of disk), is `hostState`: it is not
 * kept, so an installed or upgraded zstd is used at the next request.
 */
type Computed = DeltaOutcome & { hostState?: true };
const hostRefusal = (refused: string): Computed => ({ refused, hostState: true });

const hexOf = (digest: string) => checkDigest(digest);

/** Image manifests whose layers are kept in memory (a few digests each); past it the oldest is read again when asked. */
const MAX_KNOWN_MANIFESTS = 20_000;

/**
 * The delta cache of one registry directory.
 *
 * @example
 * ```ts
 * const deltas = new LayerDeltas(storage);
 * const outcome = await deltas.get("main/app", oldLayer, newLayer); // { descriptor } or { refused }
 * ```
 */
export class LayerDeltas {
  private readonly inflight = new Map<string, Promise<DeltaOutcome>>();
  private readonly opts: Required<DeltaOptions>;
  private readonly slots: Slots;
  /** The layers of each stored image manifest read so far, by manifest hex (content by digest: never stale). */
  private readonly manifestLayers = new Map<string, readonly string[]>();

  constructor(
    private readonly storage: RegistryStorage,
    opts: DeltaOptions = {},
  ) {
    this.opts = {
      maxRatio: opts.maxRatio ?? 0.75,
      timeoutMs: opts.timeoutMs ?? 120_000,
      maxLayerBytes: opts.maxLayerBytes ?? MAX_DELTA_BASE_BYTES,
      level: opts.level ?? 3,
      zstd: opts.zstd ?? "zstd",
      maxConcurrent: opts.maxConcurrent ?? 2,
      maxQueued: opts.maxQueued ?? 4,
      maxWaitMs: opts.maxWaitMs ?? 30_000,
    };
    if (!(this.opts.maxConcurrent >= 1) || !(this.opts.maxQueued >= 0)) throw new RangeError(`Delta options: maxConcurrent must be at least 1 and maxQueued at least 0 (got ${this.opts.maxConcurrent}, ${this.opts.maxQueued})`);
    this.slots = new Slots(this.opts.maxConcurrent, this.opts.maxQueued, this.opts.maxWaitMs);
  }

  private get dir(): string {
    return this.storage.deltasDir;
  }

  /** True if `digest` names a delta this registry made (its bytes are counted as "delta"). */
  async isDelta(digest: string): Promise<boolean> {
    return (await fileSize(join(this.dir, "blobs", hexOf(digest)))) !== undefined;
  }

  /**
   * The delta from layer `from` to layer `to` of `repo`, made now if no replica made it yet.
   * Refused (not kept) if either is no layer of an image manifest in `repo`, or if this process
   * is already making and queueing as many other pairs as it may.
   *
   * @throws {RegistryRequestError} 404 BLOB_UNKNOWN if either layer is not in `repo`; 400 for the same layer twice.
   */
  async get(repo: string, from: string, to: string): Promise<DeltaOutcome> {
    checkDigest(from);
    checkDigest(to);
    if (from === to) throw new RegistryRequestError(400, "DIGEST_INVALID", "Cannot make a delta from a layer to itself");
    for (const d of [from, to]) {
      if ((await this.storage.blobSize(repo, d)) === undefined) throw new RegistryRequestError(404, "BLOB_UNKNOWN", `Blob "${d}" not found in repository "${repo}"`, { digest: d });
    }
    const stray = await this.notLayers(repo, [from, to]);
    if (stray.length) return { refused: `${stray.join(" and ")} ${stray.length > 1 ? "are" : "is"} not a layer of any image manifest in repository "${repo}"` };
    const key = `${hexOf(from)}-${hexOf(to)}`;
    let p = this.inflight.get(key);
    if (!p) {
      p = this.outcome(key, from, to).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    const outcome = await p;
    // Each repository that asks gets the delta linked (and its gc clock reset).
    if ("descriptor" in outcome) await this.storage.linkBlob(repo, outcome.descriptor.digest);
    return outcome;
  }

  /** Which of `digests` no image manifest stored in `repo` lists among its layers. */
  private async notLayers(repo: string, digests: string[]): Promise<string[]> {
    const left = new Set(digests);
    for (const hex of await listDir(this.storage.revisionsDir(repo))) {
      if (!isSha256Digest(`sha256:${hex}`)) continue; // "." files: a link being written
      for (const d of await this.layersOf(hex)) left.delete(d);
      if (left.size === 0) break;
    }
    return digests.filter((d) => left.has(d));
  }

  /** The layers of the stored manifest `hex` (none for an index or what does not parse). */
  private async layersOf(hex: string): Promise<readonly string[]> {
    const known = this.manifestLayers.get(hex);
    if (known) return known;
    const text = await readTextOrUndefined(this.storage.blobPath(`sha256:${hex}`));
    if (text === undefined) return []; // its content is gone (gc): nothing to remember
    let layers: string[] = [];
    try {
      const parsed = parseManifest(text);
      if (parsed.kind === "manifest") layers = parsed.manifest.layers.map((l) => l.digest);
    } catch {
      // checked when pushed; whatever it is now, it names no layer
    }
    if (this.manifestLayers.size >= MAX_KNOWN_MANIFESTS) this.manifestLayers.delete(this.manifestLayers.keys().next().value!);
    this.manifestLayers.set(hex, layers);
    return layers;
  }

  /** A stored outcome whose delta blob (if any) is still there. */
  private async stored(key: string): Promise<DeltaOutcome | undefined> {
    const text = await readTextOrUndefined(join(this.dir, `${key}.json`));
    if (text === undefined) return undefined;
    let outcome: DeltaOutcome;
    try {
      outcome = JSON.parse(text) as DeltaOutcome;
    } catch {
      return undefined; // damaged: make it again
    }
    if ("descriptor" in outcome && (await fileSize(this.storage.blobPath(outcome.descriptor.digest))) === undefined) return undefined; // collected by gc
    return outcome;
  }

  private async outcome(key: string, from: string, to: string): Promise<DeltaOutcome> {
    const done = await this.stored(key);
    if (done) return done;
    const { maxConcurrent, maxQueued, maxWaitMs } = this.opts;
    const busy = (more: string) => ({ refused: `the gateway is busy making other deltas (${maxConcurrent} at a time, ${maxQueued} waiting)${more}; a later request makes this one` });
    const slot = this.slots.take();
    if (!slot) return busy("");
    const release = await slot;
    if (!release) return busy(`: no turn within ${maxWaitMs / 1000} s`);
    try {
      return await this.computeOnce(key, from, to);
    } finally {
      release();
    }
  }

  /** The pair's outcome, stored by this process or another replica: computed by whichever takes the lock file. */
  private async computeOnce(key: string, from: string, to: string): Promise<DeltaOutcome> {
    await mkdir(join(this.dir, "blobs"), { recursive: true });
    const lock = join(this.dir, `${key}.lock`);
    const staleMs = this.opts.timeoutMs + 60_000;
    const deadline = performance.now() + staleMs + 5_000; // monotonic; the lock's age is the file's mtime, wall clock
    for (;;) {
      const done = await this.stored(key);
      if (done) return done;
      let fh;
      try {
        fh = await open(lock, "wx");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
        if (age > staleMs) await rm(lock, { force: true }); // its holder died mid-way
        else if (performance.now() > deadline) return { refused: "another replica is still computing this delta" };
        else await sleep(200);
        continue;
      }
      try {
        await fh.writeFile(`${process.pid}\n`);
        await fh.close();
        const again = await this.stored(key); // made while we waited for the lock
        if (again) return again;
        const { hostState, ...outcome } = await this.compute(from, to);
        if (hostState) return outcome;
        await writeFileAtomic(join(this.dir, `${key}.json`), JSON.stringify(outcome));
        return outcome;
      } finally {
        await rm(lock, { force: true });
      }
    }
  }

  /** Unpacks both layers into a scratch dir and runs zstd --patch-from within the budgets. */
  private async compute(from: string, to: string): Promise<Computed> {
    await mkdir(this.storage.tmpDir, { recursive: true });
    const tmp = await mkdtemp(join(this.storage.tmpDir, "delta-"));
    try {
      let fromTar, toTar;
      try {
        fromTar = await this.unpack(from, join(tmp, "from.tar"));
        toTar = await this.unpack(to, join(tmp, "to.tar"));
      } catch (err) {
        if (err instanceof ZstdMissing) return hostRefusal(err.message);
        throw err;
      }
      if (fromTar === undefined || toTar === undefined) return { refused: `a layer is larger than ${this.opts.maxLayerBytes} bytes unpacked` };
      const toBlob = (await fileSize(this.storage.blobPath(to)))!;
      const windowLog = deltaWindowLog(fromTar.size, toTar.size);
      const out = join(tmp, "delta.zst");
      const args = [this.opts.zstd, "-q", "-f", `-${this.opts.level}`, `--long=${windowLog}`, `--patch-from=${fromTar.path}`, toTar.path, "-o", out];
      let proc;
      try {
        proc = this.spawnZstd(args, { stdout: "ignore", stderr: "pipe" });
      } catch (err) {
        if (err instanceof ZstdMissing) return hostRefusal(err.message);
        throw err;
      }
      const timer = setTimeout(() => proc.kill(), this.opts.timeoutMs);
      const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]).finally(() => clearTimeout(timer));
      if (proc.signalCode) return { refused: `zstd took longer than ${this.opts.timeoutMs} ms` };
      if (code !== 0) return hostRefusal(`${ZSTD_FAILED} (exit ${code}, zstd 1.5 or later is needed for --patch-from): ${stderr.trim().slice(0, 300)}`);
      const { hex, size } = await hashFile(out);
      if (size > toBlob * this.opts.maxRatio)
        return { refused: `the delta (${sizeText(size)}) is over ${Math.round(this.opts.maxRatio * 100)}% of the layer (${sizeText(toBlob)}): the layer costs about as much whole and needs no rebuild` };
      const digest = `sha256:${hex}`;
      await writeFileAtomic(join(this.dir, "blobs", hex), "");
      await this.storage.commitBlobFile(out, digest);
      const now = new Date();
      await utimes(this.storage.blobPath(digest), now, now).catch(() => undefined);
      return { descriptor: { mediaType: DELTA_MEDIA_TYPE, digest, size, from, to, fromSize: fromTar.size, toSize: toTar.size, windowLog } };
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** Runs zstd; a zstd that cannot be run (not installed) throws {@link ZstdMissing}, whose message is the refusal. */
  private spawnZstd<O extends "pipe" | "ignore">(args: string[], io: { stdout: O; stderr: "pipe" | "ignore" }) {
    try {
      return Bun.spawn(args, io);
    } catch (err) {
      throw new ZstdMissing(`${NO_ZSTD} (${this.opts.zstd}: ${(err as Error).message}); install zstd 1.5 or later there (Debian's zstd package) to make layer deltas`);
    }
  }

  /** A layer's uncompressed tar as a file (the blob itself when it is not compressed); undefined past the size limit. */
  private async unpack(digest: string, dest: string): Promise<{ path: string; size: number } | undefined> {
    const src = this.storage.blobPath(digest);
    const head = new Uint8Array(await Bun.file(src).slice(0, 4).arrayBuffer());
    const kind = sniffCompression(head);
    if (kind === "none") {
      const size = (await fileSize(src))!;
      return size > this.opts.maxLayerBytes ? undefined : { path: src, size };
    }
    const max = this.opts.maxLayerBytes;
    let size = 0;
    const limit = async function* (chunks: AsyncIterable<Uint8Array>) {
      for await (const c of chunks) {
        size += c.byteLength;
        if (size > max) throw new LayerTooLargeForDelta();
        yield c;
      }
    };
    try {
      if (kind === "gzip") {
        await pipeline(Readable.fromWeb(Bun.file(src).stream() as never), createGunzip(), limit, createWriteStream(dest));
      } else {
        const proc = this.spawnZstd([this.opts.zstd, "-d", "-q", "-c", "--long=31", src], { stdout: "pipe", stderr: "ignore" });
        await pipeline(Readable.fromWeb(proc.stdout as never), limit, createWriteStream(dest)).catch((e) => {
          proc.kill();
          throw e;
        });
        if ((await proc.exited) !== 0) throw new Error(`zstd -d failed on ${digest}`);
      }
    } catch (err) {
      if (err instanceof LayerTooLargeForDelta) return undefined;
      if (err instanceof ZstdMissing) throw err;
      // Named, so the operator finds the file: a stored blob that does not unpack is damaged on disk.
      throw new Error(`Cannot unpack the stored layer ${digest} (${src}) to make a delta: ${(err as Error).message}; the file may be damaged (check: sha256sum ${src})`, { cause: err });
    }
    return { path: dest, size };
  }
}

/**
 * At most `max` holders at once and `queued` more waiting, served in turn; a caller beyond both
 * gets no slot. A holder hands its slot straight to the next waiter.
 */
class Slots {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly max: number,
    private readonly queued: number,
    private readonly maxWaitMs: number,
  ) {}

  /**
   * The slot's release function once it is free; undefined at once when all slots and queue places
   * are taken, or after `maxWaitMs` in the queue (the device waits for this answer, and a whole
   * layer now is better than a delta minutes later).
   */
  take(): Promise<(() => void) | undefined> | undefined {
    if (this.running < this.max) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.length >= this.queued) return undefined;
    return new Promise((resolve) => {
      const turn = () => {
        clearTimeout(timer);
        resolve(this.releaser());
      };
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(turn);
        if (i >= 0) this.waiting.splice(i, 1);
        resolve(undefined);
      }, this.maxWaitMs);
      this.waiting.push(turn);
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    };
  }
}

/** The zstd command cannot be run on this host (the message is the pair's refusal, not kept). */
class ZstdMissing extends Error {
  override name = "ZstdMissing";
}

class LayerTooLargeForDelta extends Error {
  override name = "LayerTooLargeForDelta";
}
