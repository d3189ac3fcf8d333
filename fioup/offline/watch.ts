/**
 * Watch mode for offline bundles (`fioup update --offline DIR --watch`): polls DIR, typically
 * where a USB stick is mounted, and applies each bundle that appears there once. A bundle is
 * known by the sha256 of its index.json and that file's mtime, so leaving the stick in does not
 * apply it again, while a fresh copy of the same bundle is tried again. A bundle whose update is
 * left pending (its install held back by an update lock or a maintenance window, or stopped
 * half way) is not handled yet: each round resumes it while the stick stays in. Nor is one whose
 * update failed for a reason of the device's (a full disk, an engine down during the fetch): that
 * may pass, so it is tried again, the wait doubling from the interval up to RETRY_MAX_MS. A
 * failure the bundle itself causes ({@link finalForBundle}: its metadata, its target, a blob that
 * does not match) is final for it: the same bundle would fail the same way at every try, each
 * adding a failed update record. Not while a metadata file of the bundle does not parse, though
 * ({@link unparsedMetadata}): that is a copy still being written more often than a damaged one.
 * What the watch remembers is per watched folder, so two watches
 * (two sticks) do not take each other's bundles for their own. Queued events are sent whenever
 * the gateway is reachable.
 *
 * @module
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { describeError } from "../../lib/cli/command.ts";
import { BUNDLE_TUF_DIR, InvalidBundleError, MAX_BUNDLE_INDEX_BYTES, openBundle, type Bundle } from "../../lib/bundle/index.ts";
import { LockedError } from "../../lib/fs/pid-lock.ts";
import { ExpiredMetadataError, isBadTarget } from "../../lib/tuf/index.ts";
import { EXIT, exitCodeFor } from "../exit-codes.ts";
import { FetchFailedError, permanentReason } from "../update/fetch-step.ts";
import { takeUpdateLock, UpdateLockBusyError } from "../update/update-lock.ts";
import { backoffDelay, sleep } from "../../lib/net/backoff.ts";
import { reportAll } from "../report.ts";
import type { Session } from "../session.ts";
import { NoUpdateError } from "../update/check-step.ts";
import type { UpdateHooks } from "../update/context.ts";
import { UpdateDeferredError, type HoldOptions } from "../update/hold.ts";
import { runSteps } from "../update/step.ts";
import { offlinePlan } from "./plan.ts";
import { namedFew } from "../../lib/cli/few.ts";

/** How often watch mode tries to send queued events. */
const REPORT_EVERY_MS = 30_000;

/** The device DB key holding the last bundle handled in watch mode in `dir`. */
const lastBundleKey = (dir: string) => `offline:last-bundle:${dir}`;
/** The device DB key holding what last held back the pending update of the bundle watched in `dir`. */
const lastWaitKey = (dir: string) => `offline:last-wait:${dir}`;
/** The device DB key holding the failed try of the bundle watched in `dir` that is tried again ({@link FailedTry}). */
const lastFailureKey = (dir: string) => `offline:last-failure:${dir}`;
/** The longest wait before a bundle whose update failed is tried again. */
const RETRY_MAX_MS = 5 * 60_000;

/** A watched bundle's update that failed without marking its target bad, and when to try again. */
interface FailedTry {
  key: string;
  outcome: string;
  tries: number;
  /**
   * Wall-clock ms: kept in the device DB across restarts, where no monotonic reading lasts. A
   * retry further off than RETRY_MAX_MS is due at once: the clock was set back since (NTP on a
   * board that booted ahead), which must not hold the bundle for the length of the step.
   */
  retryAt: number;
}

/** Whether a failed try's wait is not over yet (see {@link FailedTry.retryAt}). */
export const retryWaiting = (f: Pick<FailedTry, "retryAt">, now: number): boolean => now < f.retryAt && f.retryAt - now <= RETRY_MAX_MS;

export interface WatchOptions {
  signal: AbortSignal;
  intervalMs: number;
  log(line: string): void;
  hooks: UpdateHooks;
  /** The install gate's options (maintenance window, update locks), as for online updates. */
  hold?: HoldOptions;
}

/**
 * Exit codes (fioup/exit-codes.ts) whose failures the bundle's own content causes: metadata that
 * does not verify (another factory's keys, a stale copy) and a target this device does not take.
 */
const BUNDLE_FAULT_EXITS: ReadonlySet<number> = new Set([EXIT.NO_MATCHING_TARGET, EXIT.TUF_VERIFICATION]);

/**
 * Whether the failure `err` of a bundle's update is final for that bundle: the same bundle would
 * fail the same way at every try. So are failures of the bundle's content (its exit code is in
 * {@link BUNDLE_FAULT_EXITS}) and those the fetch knows happen again at every try (its
 * `permanentReason`: a blob that does not match its digest, a target that never fits). Expired
 * metadata is not: the device's clock may be set meanwhile. Anything else (a full disk, the
 * engine down, a lock held) is the device's and may pass.
 */
export function finalForBundle(err: unknown): boolean {
  if (err instanceof ExpiredMetadataError) return false;
  if (BUNDLE_FAULT_EXITS.has(exitCodeFor(err))) return true;
  return permanentReason(err instanceof FetchFailedError ? err.cause : err) !== undefined;
}

/**
 * The first metadata file of `bundle` that does not parse, or undefined. `cp -r` may land
 * index.json and every blob (which openBundle checks by size) before a tuf/ file is whole; its
 * TUF check then fails as for damaged metadata (not JSON, or not the length the snapshot pins),
 * which must not make the bundle final: the copy completes, and the next try takes it.
 */
async function unparsedMetadata(bundle: Bundle): Promise<string | undefined> {
  for (const f of bundle.index.bundle.tuf) {
    const parses = await Bun.file(join(bundle.dir, BUNDLE_TUF_DIR, f)).json().then(() => true, () => false);
    if (!parses) return f;
  }
  return undefined;
}

/** What {@link watchOnce} answers when DIR holds no index.json (no bundle, or one not copied yet). */
export const NO_BUNDLE = Symbol("no bundle");

/**
 * Which folders inside `dir` hold a bundle, as advice to give one of them to --offline, or
 * undefined: a bundle's index.json must be in DIR itself, and a stick whose bundle sits in a
 * folder of its own is otherwise refused (or watched) with no word of where the bundle is.
 */
export async function bundleInside(dir: string): Promise<string | undefined> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const inside = [];
  // An index.json with a "bundle" part: an OCI image layout has an index.json too.
  for (const e of entries) if (e.isDirectory() && (await looksLikeBundle(join(dir, e.name, "index.json")))) inside.push(join(dir, e.name));
  inside.sort();
  // A few named, the rest counted: a folder such as /tmp may hold dozens.
  const shown = namedFew(inside, MAX_NAMED);
  return inside.length === 1 ? `${inside[0]} holds one: give that folder to --offline`
    : inside.length ? `${shown} each hold one: give one of those folders to --offline`
    : undefined;
}

/** Folders with a bundle named in a message before the rest are counted. */
const MAX_NAMED = 5;

/** Whether `path` is a bundle's index.json as far as a glance tells (small, JSON, with a "bundle" part); it is checked in full when opened. */
async function looksLikeBundle(path: string): Promise<boolean> {
  const f = Bun.file(path);
  try {
    if (!(await f.exists()) || f.size > MAX_BUNDLE_INDEX_BYTES) return false;
    const index = (await f.json()) as { bundle?: unknown };
    return typeof index?.bundle === "object" && index.bundle !== null;
  } catch {
    return false;
  }
}

/** Why DIR holds no bundle, said once while it stays so, naming any folder inside that holds one. */
export async function noBundle(dir: string): Promise<string> {
  return `no bundle in ${dir} yet (no index.json there); ${(await bundleInside(dir)) ?? "watching on"}`;
}

/** One look at `dir`: applies a bundle not handled yet. Returns what happened, NO_BUNDLE, or undefined if nothing did. */
export async function watchOnce(s: Session, dir: string, o: WatchOptions): Promise<string | typeof NO_BUNDLE | undefined> {
  const index = Bun.file(join(dir, "index.json"));
  if (!(await index.exists())) return NO_BUNDLE;
  let bundle;
  let key: string;
  try {
    bundle = await openBundle(dir);
    key = `${bundle.id}@${(await index.stat()).mtimeMs}`;
  } catch (e) {
    // A copy still in progress looks like a broken bundle: say so once, try again next time.
    if (!(e instanceof InvalidBundleError)) throw e;
    const seen = `invalid:${e.message}`;
    if (s.db.get<string>(lastBundleKey(dir)) === seen) return undefined;
    s.db.set(lastBundleKey(dir), seen);
    return e.message;
  }
  if (s.db.get<string>(lastBundleKey(dir)) === key) return undefined;
  const failed = s.db.get<FailedTry>(lastFailureKey(dir));
  if (failed?.key === key && retryWaiting(failed, Date.now())) return undefined;
  let lock;
  try {
    lock = takeUpdateLock(s.lockPath, "install the bundle");
  } catch (e) {
    if (e instanceof UpdateLockBusyError) return `bundle ${bundle.index.bundle.target} waits: ${e.brief}`;
    if (e instanceof LockedError) return `bundle ${bundle.index.bundle.target} waits: ${e.message}`;
    throw e;
  }
  const ctx = s.ctx(o.hooks, o.signal);
  let outcome: string;
  let failure = false;
  let final = false;
  try {
    await runSteps(offlinePlan(bundle, o.hold), ctx);
    const u = ctx.updateId ? s.db.getUpdate(ctx.updateId) : undefined;
    outcome = `bundle ${dir}: updated to ${u?.toTarget} (${u?.state})`;
    failure = u?.state === "failed";
  } catch (e) {
    if (o.signal.aborted) return "interrupted";
    failure = !(e instanceof NoUpdateError || e instanceof UpdateDeferredError);
    final = failure && finalForBundle(e) && (await unparsedMetadata(bundle)) === undefined;
    outcome = e instanceof NoUpdateError ? e.message
      : e instanceof UpdateDeferredError ? `bundle ${dir}: install deferred: ${describeError(e)}`
      : `bundle ${dir}: update failed: ${describeError(e)}`;
  } finally {
    lock.release();
  }
  // An install held back (update lock, maintenance window) or stopped half way leaves the
  // bundle's update pending: the next round resumes it, saying so only when what stops it changes.
  if (s.db.pendingUpdate()?.toTarget === bundle.index.bundle.target) {
    if (s.db.get<string>(lastWaitKey(dir)) === outcome) return undefined;
    s.db.set(lastWaitKey(dir), outcome);
    return outcome;
  }
  s.db.delete(lastWaitKey(dir));
  // A failure of the device's that did not mark the target bad may pass (space freed, the engine
  // back): tried again later, said again only when it fails otherwise. A bad target waits for a
  // newer bundle; a failure of the bundle's own waits for another bundle in DIR.
  if (failure && !final && !markedBad(s, ctx.updateId)) {
    const tries = failed?.key === key ? failed.tries + 1 : 1;
    // Failed `tries` times: the next try waits the interval doubled that many times (2 intervals after the first).
    s.db.set(lastFailureKey(dir), { key, outcome, tries, retryAt: Date.now() + backoffDelay(tries + 1, o.intervalMs, RETRY_MAX_MS) } satisfies FailedTry);
    return failed?.key === key && failed.outcome === outcome ? undefined : `${outcome}; trying again while the bundle stays in ${dir}`;
  }
  s.db.delete(lastFailureKey(dir));
  s.db.set(lastBundleKey(dir), key);
  return final ? `${outcome}; this bundle fails so at every try: not trying it again (a new bundle in ${dir} is tried)` : outcome;
}

/**
 * Whether the target of the update `id` is marked bad: its name and the content the check step
 * verified (the update's row holds that entry), as target selection reads a mark. By name alone,
 * a fix published again under a name the device once marked bad would be taken for what failed
 * when it fails for a reason of the device's, and never tried again while its bundle stays. No
 * update (the check stopped before making one): not known bad here; the next try's check decides.
 */
function markedBad(s: Session, id: string | undefined): boolean {
  const u = id ? s.db.getUpdate(id) : undefined;
  return u !== undefined && isBadTarget(s.db.badTargetMarks(), u.target.name, u.target.entry);
}

/** Watches `dir` until the signal aborts. */
export async function watchBundles(s: Session, dir: string, o: WatchOptions): Promise<void> {
  o.log(`watching ${dir} for offline bundles every ${o.intervalMs / 1000}s`);
  let lastReport = -Infinity; // performance.now(), monotonic
  let saidNoBundle = false;
  while (!o.signal.aborted) {
    try {
      const what = await watchOnce(s, dir, o);
      if (what === NO_BUNDLE) {
        if (!saidNoBundle) o.log(await noBundle(dir));
        saidNoBundle = true;
      } else {
        saidNoBundle = false;
        if (what) o.log(what);
      }
    } catch (e) {
      o.log(`cannot read ${dir}: ${describeError(e)}`);
    }
    // Queued events leave once the gateway answers: tried quietly (offline is the normal case
    // here) and at most every REPORT_EVERY_MS, so an unreachable gateway does not slow the watch.
    if (s.client && s.db.peekEvents(1).length && performance.now() - lastReport >= REPORT_EVERY_MS) {
      lastReport = performance.now();
      await reportAll(s).catch(() => {});
    }
    await sleep(o.intervalMs, o.signal);
  }
  o.log("stopped watching");
}
