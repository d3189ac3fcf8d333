/**
 * Whether the containers an activation started are up, by the rule fioup's compose start uses
 * (fioup/runtime/health.ts waitForApp, judged by lib/compose/service-verdict.ts): each must run,
 * healthy where it has a healthcheck, or have exited 0, and stay so for a settle period; exited
 * non-zero, restarting, unhealthy, dead, or a restart count that grows while watched is a failure.
 * A container that crashes right after its start is running at its first inspect: checked once,
 * it passed, and the cleanup removed the old container that worked.
 *
 * @module
 */
import type { DockerEngine } from "../runtime/docker-engine.ts";
import { judgeContainer, logTail, WAIT_DEFAULTS } from "../runtime/health.ts";

/** Same defaults as the compose start (waitForApp's). */
export interface SettleOptions {
  /** Every container must stay up this long. Default 1.5 s. */
  settleMs?: number;
  /** Give up on containers still coming up (healthcheck starting) after this long. Default 120 s. */
  timeoutMs?: number;
  /** Poll interval. Default 250 ms. */
  pollMs?: number;
  /** Ends the wait with an error: the apply is rolled back rather than confirmed half watched. */
  signal?: AbortSignal;
}

/**
 * Watches `started` (name → container ID) until every one has been up for `settleMs`, one
 * fails, or the timeout passes. Returns why each failed one failed (empty: all up). Never throws
 * for a container that fails.
 * @throws {EngineError} the engine cannot be asked at all
 * @throws {Error} the signal aborted (the agent is stopping)
 */
export async function waitUntilUp(engine: DockerEngine, started: Map<string, string>, opts: SettleOptions = {}): Promise<Map<string, string>> {
  const settleMs = opts.settleMs ?? WAIT_DEFAULTS.settleMs;
  const pollMs = opts.pollMs ?? WAIT_DEFAULTS.pollMs;
  const timeoutMs = opts.timeoutMs ?? WAIT_DEFAULTS.timeoutMs;
  const deadline = performance.now() + timeoutMs; // monotonic, as waitForApp's: a clock step is no wait
  const firstRestarts = new Map<string, number>();
  let upSince: number | undefined;
  for (;;) {
    if (opts.signal?.aborted) throw new Error("the agent stopped before the new containers were seen to run");
    const failed = new Map<string, string>();
    const waiting = new Map<string, string>();
    for (const [name, id] of started) {
      const c = await engine.inspectContainer(id);
      if (!c) {
        failed.set(name, `container "${name}" vanished after its start`);
        continue;
      }
      const { verdict, reason } = judgeContainer(c, name);
      // The rule speaks of compose services; here each is a Kanto component's container.
      const why = reason?.replace(/^service /, "container ");
      const restarts = c.RestartCount ?? 0;
      if (!firstRestarts.has(name)) firstRestarts.set(name, restarts);
      if (verdict === "failed") failed.set(name, why!);
      else if (restarts > firstRestarts.get(name)!) failed.set(name, `container "${name}" keeps restarting (restart count ${restarts})`);
      else if (verdict === "waiting") waiting.set(name, why!);
    }
    const now = performance.now();
    if (!failed.size && now >= deadline) {
      for (const [name, why] of waiting) failed.set(name, `${why}, not up within ${timeoutMs / 1000} s`);
    }
    if (failed.size) {
      for (const [name, why] of failed) failed.set(name, `${why}${await logTail(engine, started.get(name))}`);
      return failed;
    }
    if (!waiting.size) {
      upSince ??= now;
      if (now - upSince >= settleMs) return failed;
    } else upSince = undefined;
    await Bun.sleep(Math.min(pollMs, Math.max(10, deadline - now)));
  }
}
