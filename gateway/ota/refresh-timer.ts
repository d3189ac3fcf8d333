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
  /** Called with each failure (the timer keeps running). */
  onError?: (err: unknown) => void;
  /** Called after each check that re-signed something or found an offline key needed. */
  onRefresh?: (result: RefreshResult) => void;
  /** Checked before each run: false skips it (another replica holds the signer lease). */
  shouldRun?: () => boolean;
}

/**
 * Runs `repo.refreshTimestamp()` now and then every `intervalMs`; `stop()` ends it.
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
): { stop(): Promise<void>; runNow(): void } {
  let running: Promise<void> = Promise.resolve();
  let stopped = false;
  const tick = () => {
    if (stopped || opts.shouldRun?.() === false) return;
    running = repo.refreshTimestamp().then(
      (r) => {
        if (r.refreshed.length > 0 || r.needsOfflineKey.length > 0) opts.onRefresh?.(r);
      },
      (e) => opts.onError?.(e),
    );
  };
  tick();
  const handle = setInterval(tick, opts.intervalMs ?? repo.refreshIntervalMs ?? 5 * 60_000);
  handle.unref?.();
  return {
    /** Runs a check now (e.g. when this replica has just become the signer). */
    runNow: () => void running.then(tick),
    async stop() {
      stopped = true;
      clearInterval(handle);
      await running;
    },
  };
}
