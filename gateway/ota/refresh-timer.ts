/**
 * Keeps the online roles fresh: devices refuse an expired timestamp (freeze
 * protection), so `gateway serve` re-signs it well before it expires.
 *
 * @module
 */
import type { RefreshResult, TufRepo } from "./repo.ts";

export interface RefreshTimerOptions {
  /** How often to check. Default the repository's `refreshIntervalMs`, else 5 minutes (the default timestamp margin is 6 hours). */
  intervalMs?: number;
  /** How soon a check that failed is tried again, when sooner than `intervalMs` (default 10 s). */
  retryMs?: number;
  /** Called with each failure (the timer keeps running), and the one before when that check failed too. */
  onError?: (err: unknown, previous: RefreshFailure | undefined) => void;
  /** Called after each check that re-signed something or found an offline key needed. */
  onRefresh?: (result: RefreshResult) => void;
  /** Called when a check succeeds after one or more failed, with the failure it ends. */
  onRecover?: (ended: RefreshFailure) => void;
  /** Checked before each run: false skips it (another replica holds the signer lease). */
  shouldRun?: () => boolean;
}

/** Re-signing failing: since the first failed check in a row (ms since the epoch), and the last check's error. */
export interface RefreshFailure {
  since: number;
  error: string;
}

export interface TufRefreshTimer {
  /** Runs a check now (e.g. when this replica has just become the signer). */
  runNow(): void;
  /**
   * The failure while the last check failed, until one succeeds (also while `shouldRun` is false
   * in between: this replica could not sign when it last tried). The timestamp expires unless
   * someone mends it, so /healthz and the dashboard say so.
   */
  failing(): RefreshFailure | undefined;
  stop(): Promise<void>;
}

/**
 * Runs `repo.refreshTimestamp()` now and then every `intervalMs` (after a failure, again within
 * `retryMs`, so a passing fault clears soon); `stop()` ends it.
 *
 * @example
 * ```ts
 * const timer = startTufRefreshTimer(repo, { onError: (e) => log.error(e) });
 * // on shutdown: await timer.stop();
 * ```
 */
export function startTufRefreshTimer(
  repo: Pick<TufRepo, "refreshTimestamp"> & Partial<Pick<TufRepo, "refreshIntervalMs">>,
  opts: RefreshTimerOptions = {},
): TufRefreshTimer {
  const intervalMs = opts.intervalMs ?? repo.refreshIntervalMs ?? 5 * 60_000;
  let running: Promise<void> = Promise.resolve();
  let stopped = false;
  let failure: RefreshFailure | undefined;
  let retry: ReturnType<typeof setTimeout> | undefined;
  const tick = () => {
    clearTimeout(retry);
    if (stopped || opts.shouldRun?.() === false) return;
    running = repo.refreshTimestamp().then(
      (r) => {
        const ended = failure;
        failure = undefined;
        if (ended) opts.onRecover?.(ended);
        if (r.refreshed.length > 0 || r.needsOfflineKey.length > 0) opts.onRefresh?.(r);
      },
      (e) => {
        const previous = failure;
        failure = { since: previous?.since ?? Date.now(), error: e instanceof Error ? e.message : String(e) };
        opts.onError?.(e, previous);
        const retryMs = opts.retryMs ?? 10_000;
        if (!stopped && retryMs < intervalMs) {
          retry = setTimeout(tick, retryMs);
          retry.unref?.();
        }
      },
    );
  };
  tick();
  const handle = setInterval(tick, intervalMs);
  handle.unref?.();
  return {
    runNow: () => void running.then(tick),
    failing: () => failure,
    async stop() {
      stopped = true;
      clearInterval(handle);
      clearTimeout(retry);
      await running;
    },
  };
}
