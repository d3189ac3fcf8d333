/**
 * Waiting before trying again: the capped doubling delay, the jitter that spreads a fleet, and a
 * sleep that an AbortSignal cuts short. The one home of these, so every retry loop (a blob pull,
 * the daemon after a network failure, the agent's broker connection, the gateway's writer thread)
 * computes its wait the same way; each caller keeps only its own policy numbers (first delay,
 * cap, jitter), which is what differs between them.
 *
 * @module
 */
import { setTimeout as delay } from "node:timers/promises";

/**
 * The delay before try `n` (1, 2, ...): `firstMs`, doubling with each try, at most `maxMs`. A
 * count below 1 gets `firstMs`; the doubling stops after 30 (so a cap of Infinity or a first
 * delay of 0 still gives a number).
 *
 * @example
 * ```ts
 * backoffDelay(1, 250, 5000); // 250
 * backoffDelay(4, 250, 5000); // 2000
 * backoffDelay(9, 250, 5000); // 5000
 * ```
 */
export function backoffDelay(n: number, firstMs: number, maxMs: number): number {
  return Math.min(maxMs, firstMs * 2 ** Math.min(Math.max(0, n - 1), 30));
}

/** A random number of ms from `lowMs` up to (not including) `highMs`, so callers do not come back in step. */
export function randomBetween(lowMs: number, highMs: number): number {
  return lowMs + Math.random() * (highMs - lowMs);
}

/** `ms` ± `fraction` of it (0.1: ± 10%), at random. */
export function jittered(ms: number, fraction: number): number {
  return randomBetween(ms - fraction * ms, ms + fraction * ms);
}

/**
 * Sleeps `ms`, or less when `signal` aborts (at once if it already has); never throws, so a loop
 * checks `signal.aborted` after it.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return ms <= 0 || signal?.aborted ? Promise.resolve() : delay(ms, undefined, { signal }).catch(() => {});
}
