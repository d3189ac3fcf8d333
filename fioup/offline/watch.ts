/**
 * Watch mode for offline bundles (`fioup update --offline DIR --watch`): polls DIR, typically
 * where a USB stick is mounted, and applies each bundle that appears there once. A bundle is
 * known by the sha256 of its index.json and that file's mtime, so leaving the stick in does not
 * apply it again, while a fresh copy of the same bundle is tried again. A bundle whose update is
 * left pending (its install held back by an update lock or a maintenance window, or stopped
 * half way) is not handled yet: each round resumes it while the stick stays in. Nor is one whose
 * update failed without marking its target bad (a full disk, an engine down during the fetch):
 * the fault is the device's and may pass, so it is tried again, the wait doubling from the
 * interval up to RETRY_MAX_MS. Queued events are sent whenever the gateway is reachable.
 *
 * @module
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { describeError } from "../../lib/cli/command.ts";
import { InvalidBundleError, openBundle } from "../../lib/bundle/index.ts";
import { LockedError } from "../../lib/fs/pid-lock.ts";
import { takeUpdateLock, UpdateLockBusyError } from "../update/update-lock.ts";
import { sleep } from "../push.ts";
import { reportAll } from "../report.ts";
import type { Session } from "../session.ts";
import { NoUpdateError } from "../update/check-step.ts";
import type { UpdateHooks } from "../update/context.ts";
import { UpdateDeferredError, type HoldOptions } from "../update/hold.ts";
import { runSteps } from "../update/step.ts";
import { offlinePlan } from "./plan.ts";

/** How often watch mode tries to send queued events. */
const REPORT_EVERY_MS = 30_000;

/** The device DB key holding the last bundle handled in watch mode. */
const LAST_BUNDLE_KEY = "offline:last-bundle";
/** The device DB key holding what last held back the pending update of a watched bundle. */
const LAST_WAIT_KEY = "offline:last-wait";
/** The device DB key holding the failed try of a watched bundle that is tried again ({@link FailedTry}). */
const LAST_FAILURE_KEY = "offline:last-failure";
/** The longest wait before a bundle whose update failed is tried again. */
const RETRY_MAX_MS = 5 * 60_000;

/** A watched bundle's update that failed without marking its target bad, and when to try again. */
interface FailedTry {
  key: string;
  outcome: string;
  tries: number;
  retryAt: number;
}

export interface WatchOptions {
  signal: AbortSignal;
  intervalMs: number;
  log(line: string): void;
  hooks: UpdateHooks;
  /** The install gate's options (maintenance window, update locks), as for online updates. */
  hold?: HoldOptions;
}

/** What {@link watchOnce} answers when DIR holds no index.json (no bundle, or one not copied yet). */
export const NO_BUNDLE = Symbol("no bundle");

/**
 * Why DIR holds no bundle, said once while it stays so: a bundle's index.json must be in DIR
 * itself, and a stick whose bundle sits in a folder of its own would otherwise be watched in silence.
 */
export async function noBundle(dir: string): Promise<string> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const inside = [];
  for (const e of entries) if (e.isDirectory() && (await Bun.file(join(dir, e.name, "index.json")).exists())) inside.push(join(dir, e.name));
  inside.sort();
  return `no bundle in ${dir} yet (no index.json there)` + (inside.length === 1 ? `; ${inside[0]} holds one: give that folder to --offline`
    : inside.length ? `; ${inside.join(", ")} each hold one: give one of those folders to --offline`
    : "; watching on");
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
    if (s.db.get<string>(LAST_BUNDLE_KEY) === seen) return undefined;
    s.db.set(LAST_BUNDLE_KEY, seen);
    return e.message;
  }
  if (s.db.get<string>(LAST_BUNDLE_KEY) === key) return undefined;
  const failed = s.db.get<FailedTry>(LAST_FAILURE_KEY);
  if (failed?.key === key && Date.now() < failed.retryAt) return undefined;
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
  try {
    await runSteps(offlinePlan(bundle, o.hold), ctx);
    const u = ctx.updateId ? s.db.getUpdate(ctx.updateId) : undefined;
    outcome = `bundle ${dir}: updated to ${u?.toTarget} (${u?.state})`;
    failure = u?.state === "failed";
  } catch (e) {
    if (o.signal.aborted) return "interrupted";
    failure = !(e instanceof NoUpdateError || e instanceof UpdateDeferredError);
    outcome = e instanceof NoUpdateError ? e.message
      : e instanceof UpdateDeferredError ? `bundle ${dir}: install deferred: ${describeError(e)}`
      : `bundle ${dir}: update failed: ${describeError(e)}`;
  } finally {
    lock.release();
  }
  // An install held back (update lock, maintenance window) or stopped half way leaves the
  // bundle's update pending: the next round resumes it, saying so only when what stops it changes.
  if (s.db.pendingUpdate()?.toTarget === bundle.index.bundle.target) {
    if (s.db.get<string>(LAST_WAIT_KEY) === outcome) return undefined;
    s.db.set(LAST_WAIT_KEY, outcome);
    return outcome;
  }
  s.db.delete(LAST_WAIT_KEY);
  // A failure that did not mark the target bad may pass (space freed, the engine back): tried
  // again later, said again only when it fails otherwise. A bad target waits for a newer bundle.
  if (failure && !s.db.badTargets().includes(bundle.index.bundle.target)) {
    const tries = failed?.key === key ? failed.tries + 1 : 1;
    s.db.set(LAST_FAILURE_KEY, { key, outcome, tries, retryAt: Date.now() + Math.min(o.intervalMs * 2 ** tries, RETRY_MAX_MS) } satisfies FailedTry);
    return failed?.key === key && failed.outcome === outcome ? undefined : `${outcome}; trying again while the bundle stays in ${dir}`;
  }
  s.db.delete(LAST_FAILURE_KEY);
  s.db.set(LAST_BUNDLE_KEY, key);
  return outcome;
}

/** Watches `dir` until the signal aborts. */
export async function watchBundles(s: Session, dir: string, o: WatchOptions): Promise<void> {
  o.log(`watching ${dir} for offline bundles every ${o.intervalMs / 1000}s`);
  let lastReport = 0;
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
    if (s.client && s.db.peekEvents(1).length && Date.now() - lastReport >= REPORT_EVERY_MS) {
      lastReport = Date.now();
      await reportAll(s).catch(() => {});
    }
    await sleep(o.intervalMs, o.signal);
  }
  o.log("stopped watching");
}
