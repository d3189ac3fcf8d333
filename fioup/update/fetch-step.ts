/**
 * The fetch step: check free space, then pull every blob the store lacks
 * (Range resume, size + digest verified before commit). A rerun after a kill
 * skips committed blobs and resumes partial ones.
 *
 * @module
 */
import { currentUpdate } from "./context.ts";
import { eventFor } from "./_events.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { planOf } from "./plan.ts";
import { checkSpace, NoSpaceError, unpackedEstimate } from "./space.ts";
import { InvalidStateError, reached } from "./states.ts";
import type { Step } from "./step.ts";

export class FetchFailedError extends Error {
  override name = "FetchFailedError";
  constructor(cause: unknown) {
    super("Cannot fetch update content", { cause });
  }
}

/** Blobs downloaded at once. */
export const FETCH_CONCURRENCY = 4;

export const fetchStep: Step = {
  name: "fetch",
  async run(ctx) {
    let u = currentUpdate(ctx);
    if (reached(u.state, "fetched")) return;
    if (!reached(u.state, "initialized")) throw new InvalidStateError("fetch", u.state);
    const plan = planOf(u);
    const store = new DeviceBlobStore(ctx.cfg.resetAppsRoot);
    const missing = plan.blobs.filter((b) => !store.has(b.digest));
    const fail = (cause: unknown) => {
      u = currentUpdate(ctx);
      const msg = cause instanceof Error ? `${cause.message}${cause.cause instanceof Error ? `: ${cause.cause.message}` : ""}` : String(cause);
      // SPEC §3 order: a refusal before the first byte still opens the download it closes.
      const started = u.state === "initialized" ? [eventFor(u, "EcuDownloadStarted")] : [];
      ctx.db.setState(u.id, "failed", {
        error: msg,
        events: [...started, eventFor(u, "EcuDownloadCompleted", { success: false, details: msg })],
      });
    };
    // Space first: refuse before the first byte.
    try {
      await checkSpace(
        ctx.cfg.resetAppsRoot,
        missing.map((b) => b.size - store.partialSize(b.digest)),
        missing.reduce((s, b) => s + unpackedEstimate(b), 0),
        ctx.cfg.storageWatermark,
      );
    } catch (e) {
      if (e instanceof NoSpaceError) fail(e);
      throw e;
    }
    if (u.state === "initialized") ctx.db.setState(u.id, "fetching", { events: [eventFor(u, "EcuDownloadStarted")] });
    // A few blobs at a time: one slow layer does not hold up the rest.
    const inner = new AbortController();
    const onOuterAbort = () => inner.abort(ctx.signal?.reason);
    ctx.signal?.addEventListener("abort", onOuterAbort, { once: true });
    const fetchTotal = missing.reduce((n, b) => n + b.size, 0);
    let next = 0;
    let firstError: unknown;
    const worker = async () => {
      while (firstError === undefined && next < missing.length) {
        const index = ++next;
        const b = missing[index - 1]!;
        try {
          const got = await store.pull(ctx.registry(b.registry), b.repo, b, {
            signal: inner.signal,
            onProgress: (done) =>
              ctx.hooks.onBlobProgress?.({ digest: b.digest, done, total: b.size, index, count: missing.length, committed: false, fetchTotal }),
          });
          ctx.db.addBytesFetched(u.id, got);
          ctx.hooks.onBlobProgress?.({ digest: b.digest, done: b.size, total: b.size, index, count: missing.length, committed: true, fetchTotal });
        } catch (e) {
          if (firstError === undefined) firstError = e;
          inner.abort(e);
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(FETCH_CONCURRENCY, missing.length) }, worker));
    } finally {
      ctx.signal?.removeEventListener("abort", onOuterAbort);
    }
    if (firstError !== undefined) {
      if (ctx.signal?.aborted) throw firstError; // shutting down: resume later
      fail(new FetchFailedError(firstError));
      throw new FetchFailedError(firstError);
    }
    u = currentUpdate(ctx);
    ctx.db.setState(u.id, "fetched", {
      step: "fetch",
      events: [eventFor(u, "EcuDownloadCompleted", { success: true, details: { bytesFetched: u.bytesFetched } })],
    });
  },
};
