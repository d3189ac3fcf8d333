/**
 * The daemon loop: at start, converge (start the shortlisted apps of the
 * current target that are not up, stop those no longer wanted); then every
 * `uptane.polling_seconds` (± 10% jitter so a fleet does not poll in step)
 * resume any interrupted update, else check and update to a newer target;
 * report events and app states (the events also as a download begins, and
 * at a cycle's start when some are waiting). A cycle the network failed (the
 * gateway unreachable, a download cut: exit-codes.ts isNetworkFailure) is
 * tried again after 10 s, doubling up to the polling interval: a link down
 * for a minute does not cost a whole interval with no update and a gateway
 * that does not know. Sooner still when the wait for news hears the gateway
 * answer again after it found it away (push.ts, "back"): the cycle, and the
 * events queued meanwhile, go then, once per run of network failures; if
 * that cycle fails by the network too, the gateway answers but cannot serve
 * (overloaded, or a link that drops the larger transfers), and the backoff,
 * which is what relieves it, runs its course. An install deferred by the maintenance window
 * or update locks (update/hold.ts) waits, its bytes fetched, until the window
 * opens, a lock file goes or the maximum hold time ends, whichever comes
 * first (or the next poll). One update at a time
 * through the shared lock; SIGTERM stops between (or inside, abortably) steps
 * and the next start resumes.
 *
 * One daemon per device: it holds `<storage.path>/daemon.lock` for its whole
 * run (the update lock only per cycle), so a second one, started by hand beside
 * fioup.service, exits 13 instead of doubling every poll, wait for news and
 * event sent. A daemon that died (a crash, SIGKILL) leaves a stale lock, which
 * the next start takes over (lib/fs/pid-lock.ts): systemd's restart is never
 * refused. `fioup agent` beside a daemon is not refused: the agent has a lock
 * of its own (agent/beside-daemon.ts).
 *
 * @module
 */
import { mkdirSync, watch, type FSWatcher } from "node:fs";
import { join } from "node:path";
import { backoffDelay, jittered } from "../lib/net/backoff.ts";
import { describeError } from "../lib/cli/command.ts";
import { converge, describeConverge } from "./converge.ts";
import { isRejection } from "./events/sender.ts";
import { acquireLock, LockedError, type Lock } from "../lib/fs/pid-lock.ts";
import { takeUpdateLock, UpdateLockBusyError } from "./update/update-lock.ts";
import { releaseExecutablePages } from "./memory.ts";
import { waitForNews } from "./push.ts";
import { reportAll, reportingHooks, reportSystemInfo, sendEvents } from "./report.ts";
import type { Session } from "./session.ts";
import { NoUpdateError, checkStep } from "./update/check-step.ts";
import { NoTargetForDeviceError } from "./update/tuf-check.ts";
import type { UpdateHooks } from "./update/context.ts";
import { UpdateDeferredError } from "./update/hold.ts";
import { holdClock } from "./update/hold-policy.ts";
import { updateLocksDir } from "./update/update-locks.ts";
import { stoppedAt } from "./update/states.ts";
import { runSteps } from "./update/step.ts";

export interface DaemonOptions {
  signal: AbortSignal;
  log: (line: string) => void;
  hooks: UpdateHooks;
  /** Stop after this many cycles (tests); default forever. */
  cycles?: number;
}

/** What a cycle saw besides its log line: a deferral, a failure. */
export interface CycleSeen {
  deferred?: UpdateDeferredError;
  failure?: unknown;
}

/** Another `fioup daemon` runs on this device (exit 13, as any lock fioup cannot take). */
export class DaemonRunningError extends LockedError {
  override name = "DaemonRunningError";
  constructor(path: string, pid: number) {
    super(path, pid);
    this.message =
      `Cannot start the daemon: another \`fioup daemon\` (process ${pid}) runs on this device (it holds ${path}); ` +
      `it polls and updates by itself. To run this one instead, stop that one first (systemctl stop fioup, or kill ${pid})`;
  }
}

/**
 * Takes the daemon's lifetime lock, `<storage.path>/daemon.lock`.
 * @throws {DaemonRunningError} Another live daemon holds it.
 */
export function takeDaemonLock(s: Pick<Session, "cfg">): Lock {
  const path = join(s.cfg.storagePath, "daemon.lock");
  try {
    return acquireLock(path);
  } catch (e) {
    if (e instanceof LockedError && Number.isInteger(e.pid)) throw new DaemonRunningError(e.path, e.pid);
    throw e;
  }
}

/** The first retry after a failure of the network; each next one waits twice as long, up to the polling interval. */
export const NETWORK_RETRY_MS = 10_000;

/** How long before the `n`th retry (1, 2, ...) after the network failed: 10 s doubling, at most `pollMs`, ± 10%. */
export function networkRetryMs(n: number, pollMs: number): number {
  return spread(backoffDelay(n, NETWORK_RETRY_MS, pollMs));
}

/** `ms` ± 10%, so a fleet does not come back in step. */
const spread = (ms: number) => jittered(ms, 0.1);

/** One cycle: resume or check+update. Returns what happened, for the log; a deferral or failure also lands in `seen`. */
export async function daemonCycle(s: Session, o: DaemonOptions, seen: CycleSeen = {}): Promise<string> {
  let lock;
  try {
    lock = takeUpdateLock(s.lockPath, "check for updates");
  } catch (e) {
    if (e instanceof UpdateLockBusyError) return `skipped: ${e.brief}; the next cycle checks again`;
    if (e instanceof LockedError) return `skipped: ${e.message}`;
    throw e;
  }
  // Events left from before (a failure the gateway did not hear of, a previous run) go as the
  // cycle starts, not after an update that may take long: in the background, best effort. Under
  // the lock: a `fioup update` run by hand, which holds it, sends the same queue itself.
  if (s.client && s.db.peekEvents(1).length > 0) void sendEvents(s);
  try {
    const ctx = s.ctx(reportingHooks(s, o.hooks), o.signal);
    const pending = s.db.pendingUpdate();
    try {
      // The check alone first: the steps after it (registry pulls, docker load, compose) load
      // only when there is an update to run, so an idle daemon does not hold their code.
      if (!pending) await runSteps([checkStep()], ctx);
      const { plans } = await import("./update/plans.ts");
      await runSteps(pending ? plans.resume() : plans.update().filter((step) => step.name !== "check"), ctx);
    } catch (e) {
      if (e instanceof NoUpdateError) return "up to date";
      // A device whose first release is not out yet: nothing failed.
      if (e instanceof NoTargetForDeviceError) return `nothing to run yet: ${e.message.replace(/^Cannot select a target: none/, "no target")}`;
      if (e instanceof UpdateDeferredError) {
        seen.deferred = e;
        return e.message.replace(/\. The update is fetched; use --force.*$/, " (fetched)");
      }
      if (o.signal.aborted) {
        // Stopped mid-update (SIGTERM, a reboot): where it was saved, so the log says nothing was lost.
        const u = ctx.updateId ? s.db.getUpdate(ctx.updateId) : undefined;
        const at = u && stoppedAt(u);
        return at ? `interrupted: ${at.text}${at.resumable ? "; the next start resumes it" : ""}` : "interrupted";
      }
      seen.failure = e;
      return `update failed: ${describeError(e)}`;
    }
    const u = ctx.updateId ? s.db.getUpdate(ctx.updateId) : undefined;
    // The init step finished a cancel a power cut had cut short: the previous apps run again.
    if (u?.state === "canceled") return `finished the interrupted cancel of the update to ${u.toTarget}: the previous apps run again`;
    return u ? `updated to ${u.toTarget} (${u.state}, ${u.bytesFetched} bytes fetched)` : "done";
  } finally {
    lock.release();
    for (const e of await reportAll(s)) o.log(`cannot report to the gateway: ${e.message}`);
  }
}

export async function runDaemon(s: Session, o: DaemonOptions): Promise<void> {
  o.log(`fioup daemon started: polling every ${s.cfg.pollingSeconds}s`);
  // Sent at the start, and again after each cycle until the gateway took it: refused (a 503 while
  // its database stalls) or unreachable at the start, it would otherwise wait for the next start.
  let systemInfoSent = await sendSystemInfo(s, o);
  try {
    o.log(describeConverge(await converge(s, o.log)));
  } catch (e) {
    o.log(`cannot converge the apps: ${describeError(e)}`);
  }
  // The start (converge, system info) touched code the idle loop does not run: released after the first cycle.
  let touchedMore = true;
  // Cycles in a row the network failed.
  let networkFailures = 0;
  // In this run of network failures, a wait already ended as the gateway answered again.
  let checkedOnReturn = false;
  for (let i = 0; !o.signal.aborted && (o.cycles === undefined || i < o.cycles); i++) {
    const seen: CycleSeen = {};
    try {
      const result = await daemonCycle(s, o, seen);
      o.log(result);
      if (result !== "up to date" && !result.startsWith("skipped")) touchedMore = true;
    } catch (e) {
      o.log(`cycle failed: ${describeError(e)}`);
      seen.failure = e;
      touchedMore = true;
    }
    if (!systemInfoSent && !o.signal.aborted) systemInfoSent = await sendSystemInfo(s, o);
    // The cycle's garbage (TUF documents, responses, an update's buffers) goes before the wait,
    // not at some later allocation: a few ms per poll for several MB less resident while idle.
    Bun.gc(true);
    // After a cycle that did more than check (an update, a failure), the executable's pages it
    // touched go back too: an idle cycle reads back only the few it uses (memory.ts).
    if (touchedMore) {
      touchedMore = false;
      const r = await releaseExecutablePages();
      if (!r.released && i === 0) o.log(`cannot give back the executable's idle pages: ${r.reason}`);
    }
    if (o.signal.aborted || (o.cycles !== undefined && i + 1 >= o.cycles)) break;
    const base = s.cfg.pollingSeconds * 1000;
    // exit-codes.ts loads every step's module: only after a failure, so an idle daemon does not hold them.
    const byNetwork = seen.failure !== undefined && (await import("./exit-codes.ts")).isNetworkFailure(seen.failure);
    networkFailures = byNetwork ? networkFailures + 1 : 0;
    if (!networkFailures) checkedOnReturn = false;
    let wait = networkFailures ? networkRetryMs(networkFailures, base) : spread(base);
    if (networkFailures) o.log(`the network failed the update: trying again in ${Math.round(wait / 1000)} s`);
    // A deferred install: also wake when the window opens or max hold ends, and when a lock file comes or goes.
    const held = seen.deferred ? holdWake(s, seen.deferred) : undefined;
    if (held?.at !== undefined) wait = Math.min(wait, Math.max(1000, held.at - holdClock()));
    try {
      // Until the next poll, listen for news: a publish wakes the daemon at once (push.ts).
      const untilBack = networkFailures > 0 && !checkedOnReturn;
      const r = await waitForNews(s.client, s.cfg.storagePath, wait, held ? AbortSignal.any([o.signal, held.signal]) : o.signal, { untilBack });
      if (r === "news") o.log("the gateway signed something new: checking now");
      else if (r === "back") {
        checkedOnReturn = true;
        o.log("the gateway answers again: checking now");
      } else if (held?.signal.aborted && !o.signal.aborted) o.log("the update locks changed: checking the hold now");
    } finally {
      held?.close();
    }
  }
  o.log("fioup daemon stopped");
}

/** reportSystemInfo, its failure logged; whether it is done with: taken, or refused for its content (sending it again cannot help). */
async function sendSystemInfo(s: Session, o: DaemonOptions): Promise<boolean> {
  try {
    await reportSystemInfo(s);
    return true;
  } catch (e) {
    o.log(`cannot send system info: ${(e as Error).message}`);
    return isRejection(e);
  }
}

/** What a held install waits for: the hold's end (window opening, max-hold deadline) and changes in the lock directory. */
function holdWake(s: Session, e: UpdateDeferredError): { at?: number; signal: AbortSignal; close(): void } {
  const ac = new AbortController();
  let w: FSWatcher | undefined;
  if (e.decision.reason === "lock") {
    const dir = updateLocksDir(s.cfg);
    try {
      mkdirSync(dir, { recursive: true });
      w = watch(dir, () => ac.abort());
    } catch {
      // no watch: the poll and the deadline still end the wait
    }
  }
  return { ...(e.decision.until !== undefined ? { at: e.decision.until } : {}), signal: ac.signal, close: () => w?.close() };
}
