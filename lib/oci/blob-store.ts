/**
 * A content-addressed blob store on disk (`blobs/sha256/<hex>`, partial downloads under
 * `ingest/`). Downloads resume with HTTP Range after an interruption, are checked for size and
 * digest while they stream, and only verified bytes are ever renamed into `blobs/`: the store
 * the device updates from, and also the layout of an OCI image layout directory.
 *
 * @module
 */
import { backoffDelay, sleep } from "../net/backoff.ts";
import { netWhy } from "../net/why.ts";
import { mkdir, open, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { renameDurable, writeFileAtomic } from "../fs/atomic-write.ts";
import { isLocalWriteRefused } from "../fs/why.ts";
import { BatchedWriter, WRITE_BATCH_BYTES } from "./_batched-writer.ts";
import { releaseChunks } from "./_memory.ts";
import { Digester, digestBytes, digestFile, DigestMismatchError, parseDigest } from "./digest.ts";
import { RegistryError, type RegistryClient } from "./registry-client.ts";

/** Thrown when a blob the caller needs is not in the store. */
export class BlobNotFoundError extends Error {
  override name = "BlobNotFoundError";
  readonly digest: string;
  constructor(digest: string) {
    super(`Cannot read blob ${digest}: not in the store`);
    this.digest = digest;
  }
}

/** Thrown when a download sends more bytes than the descriptor's size (the partial is deleted). */
export class BlobTooLargeError extends Error {
  override name = "BlobTooLargeError";
}

/** Thrown when a download ends before the descriptor's size (the partial is kept for resume). */
export class IncompleteBlobError extends Error {
  override name = "IncompleteBlobError";
}

/** Thrown when a blob's size differs from what its descriptor says. */
export class BlobSizeMismatchError extends Error {
  override name = "BlobSizeMismatchError";
}

/**
 * Thrown when a download receives no byte for the stall timeout (retried with Range), and when
 * no byte has arrived for the whole patience (final: "no data arrived for 60 s").
 */
export class DownloadStalledError extends Error {
  override name = "DownloadStalledError";
}

/** An attempt cut short because the download's patience ran out while it waited. */
class PatienceSpentError extends DownloadStalledError {}

/** What {@link BlobStore.pull} needs to know about a blob. */
export interface BlobDescriptor {
  digest: string;
  size: number;
}

/** Options of {@link BlobStore.pull}. */
export interface PullBlobOptions {
  /** Called as bytes arrive: bytes of this blob on disk so far, and its size. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Called with every chunk's length as it arrives from the network, including bytes of
   * attempts that later fail or are thrown away: what actually crossed the wire; and where the
   * chunk goes, before it is written there.
   */
  onReceived?: (bytes: number, at: ReceivedAt) => void;
  signal?: AbortSignal;
  /**
   * Retries in a row without progress before giving up; an attempt that brought new bytes
   * resets the count. 0 disables retrying. Default: no count limit, only `patienceMs`.
   */
  retries?: number;
  /** Give up once no byte has arrived for this long across attempts (default 60 s). */
  patienceMs?: number;
  /** Abandon an attempt that receives no byte for this long and resume with Range (default 15 s). */
  stallTimeoutMs?: number;
  /**
   * Called before each retry: why the attempt failed, and how long the download has gone
   * without progress (what `patienceMs` is counted against), so a caller can say it is retrying.
   */
  onRetry?: (err: unknown, stalledMs: number) => void;
}

/**
 * Where a received chunk goes: the blob whose partial file it is written to, and the partial's
 * length once it is (the chunk's end). A chunk that does not start where the one before it of
 * that blob ended begins a new attempt, which continues the partial from its length on disk or,
 * from 0, replaces it.
 */
export interface ReceivedAt {
  digest: string;
  offset: number;
}

/** Defaults of {@link PullBlobOptions}. */
export const PULL_DEFAULTS = { patienceMs: 60_000, stallTimeoutMs: 15_000 } as const;

/** A log says a download's retries at its first retry, then at most once this often while they go on. */
export const RETRY_SAY_EVERY_MS = 10_000;

/**
 * An `onRetry` that says a blob's retries in a line for a log, the same words in every binary:
 * `retrying layer 0123456789ab: <why> (20 s so far without data; giving up after 60 s)`. The first
 * retry of a stall (a stall detected, a dropped connection) is said at once, then at most one line
 * every {@link RETRY_SAY_EVERY_MS}, so a slow link is never silent and a flapping one never floods.
 *
 * @example
 * ```ts
 * await store.pull(client, repo, blob, { onRetry: retrySayer(blob, (line) => log(line)) });
 * ```
 */
export function retrySayer(
  blob: { kind: string; digest: string },
  say: (line: string) => void,
  o: { patienceMs?: number; now?: () => number } = {},
): NonNullable<PullBlobOptions["onRetry"]> {
  const now = o.now ?? (() => performance.now()); // the clock of pull's stalledMs: monotonic
  let said: number | undefined;
  return (err, stalledMs) => {
    const t = now();
    // A stall that began after the last line (bytes came in between) is news: said at once.
    if (said !== undefined && t - stalledMs <= said && t - said < RETRY_SAY_EVERY_MS) return;
    said = t;
    const patience = (o.patienceMs ?? PULL_DEFAULTS.patienceMs) / 1000;
    say(`retrying ${blob.kind} ${blob.digest.slice(7, 19)}: ${(err as Error)?.message ?? String(err)} (${Math.round(stalledMs / 1000)} s so far without data; giving up after ${patience} s)`);
  };
}

const isRetryable = (err: unknown): boolean => {
  if (err instanceof DigestMismatchError || err instanceof BlobTooLargeError) return false;
  if (isLocalWriteRefused(err)) return false; // the disk, not the network: a full disk stays full

  if (err instanceof RegistryError) return err.status >= 500 || err.status === 429 || err.status === 408;
  if (err instanceof DownloadStalledError) return true;
  if ((err as Error)?.name === "AbortError") return false;
  return true; // connection resets, early EOF, DNS hiccups
};

/**
 * Backoff before retry `n` (1-based) of a run of attempts that made no progress: doubling from
 * 250 ms, at most 5 s, so a pull notices a registry that came back within 5 s however long it was away.
 */
export const backoffMs = (n: number) => backoffDelay(n, 250, 5000);

/**
 * A directory of blobs addressed by digest.
 *
 * @example
 * ```ts
 * const store = new BlobStore("/var/sota/reset-apps");
 * const { fetched } = await store.pull(client, "main/app", { digest, size });
 * const bytes = await store.read(digest);
 * ```
 */
export class BlobStore {
  readonly root: string;
  readonly ingestDir: string;
  private readonly inflight = new Map<string, Promise<{ fetched: number }>>();

  /** `ingestDir` defaults to `root/ingest` (it must be on the same filesystem as `root`). */
  constructor(root: string, opts: { ingestDir?: string } = {}) {
    this.root = root;
    this.ingestDir = opts.ingestDir ?? join(root, "ingest");
  }

  /** Where a blob lives (whether or not it is there). @throws {SyntaxError} on a bad digest */
  path(digest: string): string {
    const d = parseDigest(digest);
    return join(this.root, "blobs", d.algorithm, d.hex);
  }

  /** Where the partial download of a blob lives. */
  partialPath(digest: string): string {
    return join(this.ingestDir, `${parseDigest(digest).hex}.partial`);
  }

  /** Bytes of the partial download of a blob on disk (0 if none). */
  async partialSize(digest: string): Promise<number> {
    return await stat(this.partialPath(digest)).then((s) => s.size, () => 0);
  }

  /** True if the blob is committed in the store. */
  async has(digest: string): Promise<boolean> {
    return (await this.size(digest)) !== undefined;
  }

  /** The blob's size, or `undefined` if absent. */
  async size(digest: string): Promise<number | undefined> {
    try {
      const s = await stat(this.path(digest));
      return s.isFile() ? s.size : undefined;
    } catch {
      return undefined;
    }
  }

  /** A lazy file handle on a committed blob. @throws {BlobNotFoundError} */
  async open(digest: string): Promise<ReturnType<typeof Bun.file>> {
    if (!(await this.has(digest))) throw new BlobNotFoundError(digest);
    return Bun.file(this.path(digest));
  }

  /** Reads a whole blob into memory (for manifests and configs). @throws {BlobNotFoundError} */
  async read(digest: string): Promise<Uint8Array> {
    return new Uint8Array(await (await this.open(digest)).arrayBuffer());
  }

  /** Reads a blob as JSON. @throws {BlobNotFoundError} */
  async readJson<T = unknown>(digest: string): Promise<T> {
    return JSON.parse(new TextDecoder().decode(await this.read(digest))) as T;
  }

  /**
   * Stores bytes and returns their digest (sha256). Idempotent.
   *
   * @throws {DigestMismatchError} If `expected` is given and the bytes hash differently.
   */
  async writeBytes(bytes: Uint8Array, expected?: string): Promise<string> {
    const algorithm = expected ? parseDigest(expected).algorithm : "sha256";
    const digest = digestBytes(bytes, algorithm);
    if (expected && digest !== expected) throw new DigestMismatchError("Cannot store blob", expected, digest);
    if (await this.has(digest)) return digest;
    await writeFileAtomic(this.path(digest), bytes);
    return digest;
  }

  /**
   * Moves a finished file into the store after checking its size and digest. The file must
   * be on the same filesystem (e.g. under {@link ingestDir}). A bad file is deleted.
   *
   * @throws {DigestMismatchError | BlobSizeMismatchError} If the file is not that blob.
   */
  async commit(tmpPath: string, digest: string, size?: number): Promise<void> {
    const d = parseDigest(digest);
    const got = await digestFile(tmpPath, { algorithm: d.algorithm });
    if (size !== undefined && got.size !== size) {
      await rm(tmpPath, { force: true });
      throw new BlobSizeMismatchError(`Cannot commit blob ${digest}: ${got.size} bytes, expected ${size}`);
    }
    if (got.digest !== digest) {
      await rm(tmpPath, { force: true });
      throw new DigestMismatchError(`Cannot commit blob ${digest}`, digest, got.digest);
    }
    await this.moveIn(tmpPath, digest);
  }

  /** Moves a verified file into place, atomically and durably (an existing blob is the same content). */
  private async moveIn(tmpPath: string, digest: string): Promise<void> {
    const dest = this.path(digest);
    await mkdir(join(dest, ".."), { recursive: true });
    await renameDurable(tmpPath, dest);
  }

  /**
   * Whether the stored blob still hashes to its digest: a disk that rotted it, or a torn write
   * its fsync did not cover, is found here, not by its mere presence. False if it is not stored.
   */
  async intact(digest: string): Promise<boolean> {
    if (!(await this.has(digest))) return false;
    return (await digestFile(this.path(digest), { algorithm: parseDigest(digest).algorithm })).digest === digest;
  }

  /** Deletes a blob (and any partial download of it). */
  async remove(digest: string): Promise<void> {
    await rm(this.path(digest), { force: true });
    await rm(this.partialPath(digest), { force: true });
  }

  /** Every committed blob's digest. */
  async list(): Promise<string[]> {
    const out: string[] = [];
    for (const algorithm of ["sha256", "sha512"]) {
      let names: string[] = [];
      try {
        names = await readdir(join(this.root, "blobs", algorithm));
      } catch {
        continue;
      }
      for (const n of names) {
        const d = `${algorithm}:${n}`;
        try {
          parseDigest(d);
          out.push(d);
        } catch {
          // a stray file: not a blob
        }
      }
    }
    return out.sort();
  }

  /**
   * Downloads a blob into the store unless it is already there. A partial left by an earlier
   * interrupted download is resumed with `Range` (if the registry answers 206 from that
   * offset; otherwise it starts over). Bytes are hashed as they stream to disk; the blob is
   * renamed into `blobs/` only if size and digest match. Concurrent pulls of the same digest
   * in one process share one download.
   *
   * Network failures are retried, resuming from the bytes already on disk: with backoff (up
   * to 5 s) while attempts bring nothing, at once after one that made progress, until no byte
   * has arrived for `patienceMs` (a gateway restart or a dead link for that long), counted from
   * the last byte; no attempt runs past it, and the error then says no data arrived. An attempt
   * that receives nothing for `stallTimeoutMs` is abandoned and resumed. A digest mismatch
   * after resuming a partial is retried once from scratch; a fresh download that mismatches
   * is final.
   *
   * @example
   * ```ts
   * let wire = 0;
   * await store.pull(client, "main/app", desc, { stallTimeoutMs: 5000, onReceived: (n) => (wire += n) });
   * ```
   * @returns `fetched`: bytes received over the network by this call, failed attempts
   *   included (0 if already present).
   * @throws {DigestMismatchError} The content does not match: the partial is deleted.
   * @throws {BlobTooLargeError} The registry sent more than `size` bytes: the partial is deleted.
   * @throws {DownloadStalledError} No data arrived for `patienceMs`: the message names the blob
   *   and host. The partial is kept so the next call resumes.
   * @throws {RegistryError | IncompleteBlobError | Error} Network failures once `retries` run
   *   out; the partial is kept.
   */
  async pull(client: RegistryClient, repo: string, desc: BlobDescriptor, opts: PullBlobOptions = {}): Promise<{ fetched: number }> {
    parseDigest(desc.digest);
    if (!Number.isSafeInteger(desc.size) || desc.size < 0) throw new RangeError(`Cannot pull blob ${desc.digest}: bad size ${desc.size}`);
    const existing = await this.size(desc.digest);
    if (existing !== undefined) return { fetched: 0 };
    const running = this.inflight.get(desc.digest);
    if (running) {
      await running;
      return { fetched: 0 };
    }
    const p = this.download(client, repo, desc, opts);
    this.inflight.set(desc.digest, p);
    try {
      return await p;
    } finally {
      this.inflight.delete(desc.digest);
    }
  }

  private async download(client: RegistryClient, repo: string, desc: BlobDescriptor, opts: PullBlobOptions): Promise<{ fetched: number }> {
    await mkdir(this.ingestDir, { recursive: true });
    const counter: Counter = { fetched: 0, lastByteAt: performance.now() };
    const patienceMs = opts.patienceMs ?? PULL_DEFAULTS.patienceMs;
    // Patience counts from the last byte that brought the download further (never from when the
    // attempt that brought it failed, 15 s later), and no attempt outlives it: a dead link gives
    // up 60 s after its last byte, not after a stall timeout and a backoff more. Measured on the
    // monotonic clock: NTP setting the wall clock mid-download neither spends patience at once
    // (a step forward) nor keeps a dead link retried for the length of a step back.
    let lastProgress = performance.now();
    const deadline = () => lastProgress + patienceMs;
    let idle = 0; // failed attempts in a row that brought the download no further
    let restartedAfterMismatch = false;
    // Progress is the verified partial growing past its best length so far, not bytes received:
    // a server that sends the same short answer on every attempt (a truncated blob, a range it
    // refuses so the download starts over) brings bytes each time but never gets further.
    let best = await this.partialSize(desc.digest);
    const gaveUp = (last: unknown) => {
      const why = last instanceof DownloadStalledError ? "the link stalled" : netWhy((last as Error)?.cause ?? last);
      // No cause: the last try's transport error is said in words here, not in Bun's text.
      return new DownloadStalledError(
        `Cannot fetch blob ${desc.digest} from ${client.registry}/${repo}: no data arrived for ${patienceMs / 1000} s (${best} of ${desc.size} bytes on disk; last try: ${why})`,
      );
    };
    for (;;) {
      const resumed = (await this.partialSize(desc.digest)) > 0;
      try {
        await this.attempt(client, repo, desc, opts, counter, deadline());
        break;
      } catch (err) {
        if (opts.signal?.aborted) throw err;
        // A resumed partial may hold someone else's bytes (a tampered earlier answer): the
        // partial is gone now, so one fresh download settles whether the blob itself is bad.
        if (err instanceof DigestMismatchError && resumed && !restartedAfterMismatch) {
          restartedAfterMismatch = true;
          continue;
        }
        if (!isRetryable(err) || opts.retries === 0) throw err;
        const now = await this.partialSize(desc.digest);
        if (now > best) {
          best = now;
          idle = 0;
          lastProgress = counter.lastByteAt;
        } else idle++;
        if (opts.retries !== undefined && idle > opts.retries) throw err;
        if (err instanceof PatienceSpentError || performance.now() >= deadline()) throw gaveUp(err);
        opts.onRetry?.(err, performance.now() - lastProgress);
        await sleep(Math.min(deadline() - performance.now(), idle === 0 ? 50 : backoffMs(idle)), opts.signal);
        if (!opts.signal?.aborted && performance.now() >= deadline()) throw gaveUp(err);
      }
    }
    await this.moveIn(this.partialPath(desc.digest), desc.digest);
    return { fetched: counter.fetched };
  }

  /** One download attempt: leaves a complete, verified partial or throws. */
  private async attempt(client: RegistryClient, repo: string, desc: BlobDescriptor, opts: PullBlobOptions, counter: Counter, deadline: number): Promise<void> {
    const { digest, size } = desc;
    const algorithm = parseDigest(digest).algorithm;
    const partial = this.partialPath(digest);
    let have = await stat(partial).then((s) => s.size, () => 0);
    if (have > size) {
      await rm(partial, { force: true });
      have = 0;
    }
    let hasher = new Digester(algorithm);
    if (have > 0) {
      for await (const chunk of Bun.file(partial).slice(0, have).stream()) hasher.update(chunk);
    }
    if (have < size) {
      // A watchdog per attempt: no byte (headers included) for stallTimeoutMs aborts this
      // attempt only; the caller resumes from what reached the disk. Until a byte comes it fires
      // at the download's deadline at the latest, when patience is spent.
      const stall = new AbortController();
      const stallMs = opts.stallTimeoutMs ?? PULL_DEFAULTS.stallTimeoutMs;
      let capped = deadline - performance.now() < stallMs;
      const stalled = () =>
        stall.abort(
          capped
            ? new PatienceSpentError(`Cannot fetch blob ${digest} from ${repo}: patience spent after ${have} of ${size} bytes`)
            : new DownloadStalledError(`Cannot fetch blob ${digest} from ${repo}: no data for ${stallMs / 1000} s after ${have} of ${size} bytes`),
        );
      let timer = setTimeout(stalled, capped ? Math.max(0, deadline - performance.now()) : stallMs);
      const signal = opts.signal ? AbortSignal.any([opts.signal, stall.signal]) : stall.signal;
      const rethrow = (err: unknown): never => {
        if (stall.signal.aborted && !opts.signal?.aborted) throw stall.signal.reason;
        throw err;
      };
      try {
        let res: Response;
        try {
          res = await client.fetchBlob(repo, digest, { start: have || undefined, signal });
        } catch (err) {
          if (!(err instanceof RegistryError && err.status === 416 && have > 0)) return rethrow(err);
          // The registry says our offset is past the end: the partial is not a prefix of it.
          await rm(partial, { force: true });
          have = 0;
          hasher = new Digester(algorithm);
          res = await client.fetchBlob(repo, digest, { signal }).catch(rethrow);
        }
        if (!capped) timer.refresh(); // a capped watchdog keeps the deadline: headers are no data
        if (have > 0 && !(res.status === 206 && contentRangeStart(res) === have)) {
          // The registry ignored Range: whatever it sends starts at 0.
          if (res.status !== 200) {
            await res.body?.cancel().catch(() => {});
            throw new RegistryError(`Cannot resume blob ${digest} from ${repo}: unexpected status ${res.status} to a Range request`, res.status);
          }
          have = 0;
          hasher = new Digester(algorithm);
        }
        // Received bytes are hashed at once and written in large batches while the next ones
        // arrive; `onProgress` reports bytes whose write completed. Every byte received is
        // written before the file closes (even on failure), so a retry resumes after it.
        const fh = await open(partial, have > 0 ? "a" : "w");
        const base = have;
        const out = new BatchedWriter(fh, { batch: Math.min(WRITE_BATCH_BYTES, size - have), onWritten: (n) => opts.onProgress?.(base + n, size) });
        try {
          if (res.body) {
            try {
              for await (const chunk of res.body) {
                if (capped) {
                  // Data again: patience starts over, the attempt gets the whole stall timeout.
                  capped = false;
                  clearTimeout(timer);
                  timer = setTimeout(stalled, stallMs);
                } else timer.refresh();
                counter.fetched += chunk.byteLength;
                counter.lastByteAt = performance.now();
                opts.onReceived?.(chunk.byteLength, { digest, offset: have + chunk.byteLength });
                if (have + chunk.byteLength > size) {
                  await out.discard();
                  await fh.close().catch(() => {});
                  await rm(partial, { force: true });
                  throw new BlobTooLargeError(`Cannot fetch blob ${digest} from ${repo}: registry sent more than the expected ${size} bytes`);
                }
                hasher.update(chunk);
                have += chunk.byteLength;
                await out.write(chunk);
                releaseChunks(chunk.byteLength);
              }
            } catch (err) {
              // A write the disk refused is no lost connection: said as it is (ENOSPC), not retried.
              if (err instanceof BlobTooLargeError || opts.signal?.aborted || isLocalWriteRefused(err)) throw err;
              rethrow(new IncompleteBlobError(`Cannot fetch blob ${digest} from ${repo}: connection lost after ${have} of ${size} bytes: ${netWhy(err)}`, { cause: err }));
            }
          }
          await out.flush();
          if (have === size) await fh.sync(); // once, at the end: durable before the rename
        } finally {
          await out.flush().catch(() => {});
          await fh.close().catch(() => {});
        }
      } finally {
        clearTimeout(timer);
      }
      if (have < size) throw new IncompleteBlobError(`Cannot fetch blob ${digest} from ${repo}: connection ended after ${have} of ${size} bytes`);
    }
    const got = hasher.digest();
    if (got !== digest) {
      await rm(partial, { force: true });
      throw new DigestMismatchError(`Cannot fetch blob ${digest} from ${repo}`, digest, got);
    }
    // An empty blob needs no request, but its (empty) partial must exist for the move into the store.
    if (size === 0) await (await open(partial, "w")).close();
  }
}

/** Bytes a pull received (its result), and when the last one came (performance.now(): where patience counts from). */
interface Counter {
  fetched: number;
  lastByteAt: number;
}

function contentRangeStart(res: Response): number | undefined {
  const m = /^bytes\s+(\d+)-\d+\/(?:\d+|\*)$/.exec(res.headers.get("content-range")?.trim() ?? "");
  return m ? Number(m[1]) : undefined;
}
