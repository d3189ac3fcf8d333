/**
 * The fetch step: check free space on every filesystem that will receive
 * bytes, then pull every blob the store lacks (Range resume, size + digest
 * verified before commit, retried while attempts make progress, a stalled
 * connection resumed after `fioup.download_stall_seconds`). A rerun after a
 * kill skips committed blobs and resumes partial ones. Bytes are counted as
 * they arrive, failed attempts included, and saved at least every MiB; each save also says
 * how far each partial file was counted, so the run after a kill first counts what the killed
 * one wrote to its partials after its last save (countLeftByKilledRun). A failure that cannot heal (a blob
 * that never matches its digest, a target that does not fit) marks the target
 * bad the second time it happens, so the daemon stops fetching it; a bundle's
 * blob that does not match is the bundle's fault and does not count.
 *
 * A missing layer of an image path the device already holds an older layer of is first asked
 * for as a delta (_layer-deltas.ts); the layer is fetched whole if no delta comes or it does
 * not rebuild the pinned bytes (from an offline bundle, which has no whole layer, the space
 * check counts the delta and the rebuilt layer instead). `EcuDownloadCompleted` reports the bytes a full fetch would
 * take (`bytesFull`), the bytes fetched, and the layers that came as deltas.
 *
 * @module
 */
import { updateKey, type DeviceDb, type UpdateRow } from "../db.ts";
import { faultMidBlob, faultPoint } from "../fault.ts";
import { statSync } from "node:fs";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import type { AppBlob } from "../../lib/device/resolve.ts";
import { BlobTooLargeError, retrySayer, type PullBlobOptions, type ReceivedAt } from "../../lib/oci/blob-store.ts";
import { DigestMismatchError } from "../../lib/oci/digest.ts";
import { isNoSpace } from "../../lib/fs/why.ts";
import { processStamp } from "../../lib/fs/pid-lock.ts";
import { currentUpdate, type UpdateContext } from "./context.ts";
import { eventFor } from "./_events.ts";
import { deltaCandidates, fetchLayerDelta, type DeltaReport } from "./_layer-deltas.ts";
import { planOf } from "./plan.ts";
import { maxRebuiltBytes } from "../../lib/oci/delta.ts";
import { recordedLayerSizes } from "../../lib/api/target.ts";
import { bundleDeltaOf, checkSpace, dockerRootNeed, NoSpaceError, onDisk, type SpaceNeed } from "./space.ts";
import { InvalidStateError, reached } from "./states.ts";
import type { Step } from "./step.ts";

/** A lack of space anywhere in `err`'s causes (ENOSPC, SQLite's full disk, a delta's rebuild that filled the store). */
export function diskFilled(err: unknown): boolean {
  for (let e = err, n = 0; e !== undefined && e !== null && n < 10; e = (e as Error).cause, n++) if (isNoSpace(e)) return true;
  return false;
}

/**
 * Records a failure in fioup.db, unless the disk is too full to take the record: the update then
 * stays saved as it was (the write is rolled back whole, and the next run checks again) and the
 * caller throws the failure itself, which says what is full and what is needed, not SQLite's
 * "database or disk is full".
 */
export function recordUnlessDiskFull(write: () => void): void {
  try {
    write();
  } catch (e) {
    if (!diskFilled(e)) throw e;
  }
}

export class FetchFailedError extends Error {
  override name = "FetchFailedError";
  /** `store`: the blob store's folder, named when the disk filled (where to free space). */
  constructor(cause: unknown, store?: string) {
    super(diskFilled(cause) && store ? `Cannot fetch update content: the disk holding ${store} filled during the fetch; free space there and run the update again (it resumes)` : "Cannot fetch update content", { cause });
  }
}

/** Blobs downloaded at once: two keep a link busy; each more costs the daemon memory (500 MB, compiled: peak RSS 113 MB with 4, 103 with 2). */
export const FETCH_CONCURRENCY = 2;
/** Received bytes are added to the update's count at least this often (and at each blob's end). */
const COUNT_EVERY_BYTES = 1 << 20;

/**
 * A download of an update that is retrying now (fioup status shows it): the blob, why its last
 * attempt failed, and since when no byte of it arrived. Kept while the retries last, so a frozen
 * byte count in `fioup status` says why; gone once bytes arrive again and when the fetch ends.
 */
export interface FetchStall {
  blob: string;
  retrying: string;
  noDataSince: string;
}

/**
 * As stored: which process is retrying, and its stamp (boot and start ticks: a reused PID is another
 * process, and a clock NTP sets meanwhile does not make a live fetch look dead). A note an older
 * fioup wrote, with a start time in ms instead, reads as its fetch's end.
 */
interface StoredStall extends FetchStall {
  pid?: number;
  pidStamp?: string;
}

const fetchStallKey = (updateId: string) => updateKey("fetch-stall", updateId);

/**
 * How far the count of update `updateId` covers each partial file of its downloads: digest →
 * the offset up to which its bytes are counted. Saved with every count, in its transaction, and
 * before the first byte of each attempt reaches the partial, so past these offsets a partial
 * holds only bytes no count has seen.
 */
const countedToKey = (updateId: string) => updateKey("fetch-counted-to", updateId);

/**
 * Counts what a run killed mid-fetch wrote to its partial files after its last count: each
 * partial's bytes past the offset its count covers (a blob it committed meanwhile: the rest of
 * the blob). Returns the bytes added. What the killed run had received but not yet written
 * (at most a write batch or two per download, 1 MiB each) is not on disk and comes again, so
 * it is counted once, when it does.
 */
function countLeftByKilledRun(db: UpdateContext["db"], updateId: string, store: DeviceBlobStore): number {
  const countedTo = db.get<Record<string, number>>(countedToKey(updateId));
  if (!countedTo) return 0;
  let left = 0;
  for (const [digest, to] of Object.entries(countedTo)) left += Math.max(0, bytesOnDisk(store, digest) - to);
  db.transaction(() => {
    if (left > 0) db.addBytesFetched(updateId, left);
    db.delete(countedToKey(updateId));
  });
  return left;
}

/** A blob's bytes in the store: the whole blob once committed, else its partial's. */
function bytesOnDisk(store: DeviceBlobStore, digest: string): number {
  try {
    return statSync(store.path(digest)).size;
  } catch {
    return store.partialSize(digest);
  }
}

/**
 * The retrying download of update `updateId`, if one is retrying now. A record whose process is
 * gone (a fetch killed while it retried: the update stays "fetching" until the next run) is not
 * shown: nothing is retrying, and the next run clears it.
 */
export function fetchStallOf(db: DeviceDb, updateId: string): FetchStall | undefined {
  const s = db.get<StoredStall>(fetchStallKey(updateId));
  if (!s) return undefined;
  if (s.pid !== undefined && processStamp(s.pid) !== s.pidStamp) return undefined;
  return { blob: s.blob, retrying: s.retrying, noDataSince: s.noDataSince };
}

/** Why a failure will happen again on every try (same words each time), or undefined if it may heal. */
export function permanentReason(err: unknown): string | undefined {
  if (err instanceof DigestMismatchError) return `blob ${err.expected} does not match its digest`;
  if (err instanceof BlobTooLargeError) return err.message;
  // Only an update larger than the whole filesystem: one that lacks free space today fits once
  // there is room, so it is tried again (the check refuses it before any download meanwhile).
  if (err instanceof NoSpaceError && err.neverFits) return `the update does not fit in ${err.where}, even empty`;
  return undefined;
}

/**
 * Records a failure; the second identical permanent failure of a target marks it bad
 * (checks skip it from then on) and says so. Bytes from an offline bundle that do not match
 * their digest are the carrier's fault (bit rot on a stick, a copy cut short), not the
 * target's: they are refused and not counted, so a good bundle of that target still installs.
 */
export function notePermanentFailure(ctx: UpdateContext, u: UpdateRow, err: unknown): void {
  if (ctx.bundle && err instanceof DigestMismatchError) return;
  const reason = permanentReason(err);
  if (!reason) return;
  if (ctx.db.notePermanentFailure(u.target, reason)) ctx.hooks.onInfo?.(`Marked ${u.toTarget} bad: ${reason} (failed twice)`);
}

/**
 * What the blob store receives for blob `b`: the blob; for a layer a bundle carries only as a
 * delta, the delta and the layer it rebuilds, uncompressed (a bundle has no whole layer to fall
 * back to). Online the whole layer is the fallback, so a full store still takes the update whole.
 */
function storeBytes(ctx: UpdateContext, store: DeviceBlobStore, b: AppBlob, recorded: Map<string, number>): number {
  const delta = bundleDeltaOf(ctx, b);
  if (!delta) return onDisk(b.size - store.partialSize(b.digest));
  // The bundle's toSize is unsigned: never counted over what the signed layer may unpack to (a
  // larger claim is refused unread), by the target's recorded size as the delta's own check reads it.
  const bound = maxRebuiltBytes({ ...b, unpackedSize: recorded.get(b.digest) });
  return (store.has(delta.digest) ? 0 : onDisk(delta.size - store.partialSize(delta.digest))) + onDisk(Math.min(delta.toSize, bound));
}

/** What the blob store and Docker's data root will each receive. */
async function spaceNeeds(ctx: UpdateContext, u: UpdateRow, store: DeviceBlobStore, missing: AppBlob[]): Promise<SpaceNeed[]> {
  const recorded = recordedLayerSizes(u.target.entry.custom);
  const needs: SpaceNeed[] = [{ path: ctx.cfg.resetAppsRoot, what: "the blob store", bytes: missing.reduce((s, b) => s + storeBytes(ctx, store, b, recorded), 0) }];
  const layers = missing.filter((b) => b.kind === "layer");
  const dataRoot = layers.length ? await ctx.runtime.dataRoot().catch(() => undefined) : undefined;
  if (dataRoot) needs.push(await dockerRootNeed(ctx, u, dataRoot, layers, layers));
  return needs;
}

export const fetchStep: Step = {
  name: "fetch",
  async run(ctx) {
    let u = currentUpdate(ctx);
    if (reached(u.state, "fetched")) return;
    if (!reached(u.state, "initialized")) throw new InvalidStateError("fetch", u.state);
    const plan = planOf(u);
    const store = new DeviceBlobStore(ctx.cfg.resetAppsRoot);
    const missing = plan.blobs.filter((b) => !store.has(b.digest));
    const fail = (cause: unknown, raw: unknown) => {
      u = currentUpdate(ctx);
      const msg = cause instanceof Error ? `${cause.message}${cause.cause instanceof Error ? `: ${cause.cause.message}` : ""}` : String(cause);
      // The documented event order (docs/formats.md): a refusal before the first byte still opens the download it closes.
      const started = u.state === "initialized" ? [eventFor(u, "EcuDownloadStarted")] : [];
      notePermanentFailure(ctx, u, raw);
      // Its counts and notes go with it (DeviceDb.setState): a failed update is not resumed.
      ctx.db.setState(u.id, "failed", {
        error: msg,
        events: [...started, eventFor(u, "EcuDownloadCompleted", { success: false, details: msg })],
      });
    };
    // Space first: refuse before the first byte.
    try {
      if (missing.length) await checkSpace(await spaceNeeds(ctx, u, store, missing), ctx.cfg.storageWatermark);
    } catch (e) {
      // On a disk with no byte left the refusal's record fails too: the refusal is what is said.
      if (e instanceof NoSpaceError) recordUnlessDiskFull(() => fail(e, e));
      throw e;
    }
    // After the space check, which writes nothing: this writes to fioup.db, which on a disk left
    // full by a killed run would fail with SQLite's own "disk is full" before the check could say
    // why. A refusal above ends the update uncounted by what the killed run wrote after its last
    // count (saved at least every MiB: about that much a download).
    countLeftByKilledRun(ctx.db, u.id, store);
    if (u.state === "initialized") ctx.db.setState(u.id, "fetching", { events: [eventFor(u, "EcuDownloadStarted")] });
    // A few blobs at a time: one slow layer does not hold up the rest.
    const inner = new AbortController();
    const onOuterAbort = () => inner.abort(ctx.signal?.reason);
    ctx.signal?.addEventListener("abort", onOuterAbort, { once: true });
    const fetchTotal = missing.reduce((n, b) => n + b.size, 0);
    // What this update reports about its fetch, kept across reruns (a resumed run misses fewer blobs).
    const reportKey = updateKey("fetch-report", u.id);
    const report = ctx.db.get<{ bytesFull: number; deltas: DeltaReport[] }>(reportKey) ?? { bytesFull: fetchTotal, deltas: [] };
    ctx.db.set(reportKey, report);
    const candidates = await deltaCandidates(ctx.db, u.id, plan, store, missing, ctx.cfg, (host) => ctx.registry(host));
    // Configs first (a delta is checked against its config), layers that may come as deltas last.
    const rank = (b: AppBlob) => (b.kind === "config" ? 0 : candidates.has(b.digest) ? 2 : 1);
    missing.sort((a, b) => rank(a) - rank(b));
    const stallTimeoutMs = (ctx.cfg.downloadStallSeconds ?? 15) * 1000;
    let uncounted = 0;
    // How far the count covers each partial being written (countedToKey), and whether that moved since the last save.
    const countedTo = new Map<string, number>();
    let moved = false;
    const count = () => {
      if (uncounted === 0 && !moved) return;
      ctx.db.transaction(() => {
        if (uncounted > 0) ctx.db.addBytesFetched(u.id, uncounted);
        if (moved) ctx.db.set(countedToKey(u.id), Object.fromEntries(countedTo));
      });
      uncounted = 0;
      moved = false;
    };
    const received = (n: number, at: ReceivedAt | undefined) => {
      if (at) {
        const start = at.offset - n;
        if (countedTo.get(at.digest) !== start) {
          // A new attempt: it continues the partial from `start` (bytes counted already, by this
          // run or by countLeftByKilledRun) or replaces it from 0. Saved before its first byte is written.
          countedTo.set(at.digest, start);
          moved = true;
          count();
        }
        countedTo.set(at.digest, at.offset);
        moved = true;
      }
      uncounted += n;
      if (uncounted >= COUNT_EVERY_BYTES) count();
    };
    // Partials committed into blobs are covered whole by the count that follows: no longer said.
    const forgetCommitted = () => {
      for (const [digest, to] of countedTo) {
        if (store.has(digest) && bytesOnDisk(store, digest) === to) {
          countedTo.delete(digest);
          moved = true;
        }
      }
    };
    // The blob whose retries fetchStallOf shows now, if any: its next bytes clear it. A record
    // left by a run that was killed while retrying is not this run's.
    let stalledBlob: string | undefined;
    const stallKey = fetchStallKey(u.id);
    // Stored with the note, so status can tell a retrying fetch from one that was killed.
    const self = processStamp(process.pid);
    // The note for status is best effort: a full disk refuses its writes, never the download.
    const clearStall = () => {
      try {
        ctx.db.delete(stallKey);
      } catch {}
    };
    clearStall();
    let next = 0;
    let firstError: unknown;
    // A stall and the retries that follow are said in the log (retrySayer's pace) and kept for fioup status.
    const onRetry = (b: AppBlob): PullBlobOptions["onRetry"] => {
      const say = retrySayer(b, (line) => ctx.hooks.onInfo?.(line));
      return (err, stalledMs) => {
        say(err, stalledMs);
        stalledBlob = b.digest;
        const stall: StoredStall = {
          blob: b.digest,
          retrying: (err as Error)?.message ?? String(err),
          noDataSince: new Date(Date.now() - stalledMs).toISOString(),
          pid: process.pid,
          ...(self !== undefined ? { pidStamp: self } : {}),
        };
        try {
          ctx.db.set(stallKey, stall);
        } catch {
          // a full disk refuses the note for status: the download still retries
        }
      };
    };
    const worker = async () => {
      while (firstError === undefined && next < missing.length) {
        const index = ++next;
        const b = missing[index - 1]!;
        try {
          const onReceived = (n: number, at?: ReceivedAt) => {
            if (stalledBlob === b.digest) {
              stalledBlob = undefined;
              clearStall();
            }
            received(n, at);
          };
          const candidate = candidates.get(b.digest);
          const delta = candidate
            ? await fetchLayerDelta(ctx.registry(b.registry), store, candidate, {
                signal: inner.signal,
                stallTimeoutMs,
                onReceived,
                // A bundle has no whole layer: the fetch of it that follows fails, saying so.
                onRefused: (why) =>
                  ctx.hooks.onInfo?.(ctx.bundle ? `Layer ${b.digest}: the bundle's delta did not rebuild here (${why})` : `Layer ${b.digest}: no delta (${why}); fetching it whole`),
                onInfo: (line) => ctx.hooks.onInfo?.(line),
                // The rebuild, the long part of a large layer's delta, moves the bar as a download
                // does: its share of the layer (the hooks count the layer's registry size).
                onRebuilt: (done, total) =>
                  ctx.hooks.onBlobProgress?.({ digest: b.digest, done: Math.floor((done / total) * b.size), total: b.size, index, count: missing.length, committed: false, fetchTotal }),
              })
            : undefined;
          if (delta) {
            report.deltas.push(delta);
            ctx.db.set(reportKey, report);
          } else await store.pull(ctx.registry(b.registry), b.repo, b, {
            signal: inner.signal,
            stallTimeoutMs,
            onReceived,
            onRetry: onRetry(b),
            onProgress: (done) => {
              faultMidBlob(b.digest, done, b.size); // power-cut tests (fioup/fault.ts)
              ctx.hooks.onBlobProgress?.({ digest: b.digest, done, total: b.size, index, count: missing.length, committed: false, fetchTotal });
            },
          });
          faultPoint("blob-committed", { digest: b.digest }); // power-cut tests (fioup/fault.ts)
          ctx.hooks.onBlobProgress?.({
            digest: b.digest,
            done: b.size,
            total: b.size,
            index,
            count: missing.length,
            committed: true,
            fetchTotal,
            ...(delta ? { deltaBytes: delta.deltaBytes } : {}),
          });
        } catch (e) {
          if (firstError === undefined) firstError = e;
          inner.abort(e);
        } finally {
          // On a full disk the count's own write fails too: it must not hide what failed first.
          try {
            forgetCommitted();
            count();
          } catch (e) {
            if (firstError === undefined) firstError = e;
            inner.abort(e);
          }
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(FETCH_CONCURRENCY, missing.length) }, worker));
    } finally {
      ctx.signal?.removeEventListener("abort", onOuterAbort);
      if (stalledBlob !== undefined) clearStall(); // a full disk: the failure that ended the fetch is what is said
    }
    if (firstError !== undefined) {
      if (ctx.signal?.aborted) throw firstError; // shutting down: resume later
      const failed = new FetchFailedError(firstError, store.root);
      // A full disk refuses the failure's record too: the update then stays fetching and the next run resumes it.
      recordUnlessDiskFull(() => fail(failed, firstError));
      throw failed;
    }
    u = currentUpdate(ctx);
    // A fetch that had nothing to fetch proves nothing: the install's refusal for want of room
    // in Docker's data root must count twice in a row to mark a target bad that never fits.
    if (missing.length) ctx.db.forgetPermanentFailure(u.toTarget);
    // Events carry at most 16 kB of details: the first 40 deltas by name, all of them counted.
    const deltas = report.deltas.slice(0, 40).map((d) => ({ layer: d.layer, from: d.from, deltaBytes: d.deltaBytes, layerBytes: d.layerBytes }));
    ctx.db.transaction(() => {
      ctx.db.setState(u.id, "fetched", {
        step: "fetch",
        events: [eventFor(u, "EcuDownloadCompleted", { success: true, details: { bytesFetched: u.bytesFetched, bytesFull: report.bytesFull, deltaLayers: report.deltas.length, deltas } })],
      });
      ctx.db.delete(countedToKey(u.id));
    });
    ctx.db.delete(reportKey); // after the state: a crash in between reruns nothing but still finds the report
  },
};
