import { expect, test } from "bun:test";
import { backoffDelay, jittered, randomBetween, sleep } from "./backoff.ts";

test("backoffDelay doubles from the first delay up to the cap", () => {
  expect([0, 1, 2, 3, 4, 5, 6, 40].map((n) => backoffDelay(n, 250, 5000))).toEqual([250, 250, 500, 1000, 2000, 4000, 5000, 5000]);
  expect(backoffDelay(1e6, 1000, Infinity)).toBe(1000 * 2 ** 30);
  expect(backoffDelay(1e6, 0, 100)).toBe(0);
});

test("randomBetween and jittered stay in their range", () => {
  for (let i = 0; i < 200; i++) {
    const r = randomBetween(1000, 5000);
    expect(r).toBeGreaterThanOrEqual(1000);
    expect(r).toBeLessThan(5000);
    const j = jittered(10_000, 0.1);
    expect(j).toBeGreaterThanOrEqual(9000);
    expect(j).toBeLessThanOrEqual(11_000);
  }
});

test("sleep waits, wakes early without throwing when the signal aborts, and returns at once when it already has", async () => {
  let t = performance.now();
  await sleep(30);
  expect(performance.now() - t).toBeGreaterThanOrEqual(25);

  const ac = new AbortController();
  setTimeout(() => ac.abort(), 20);
  t = performance.now();
  await sleep(10_000, ac.signal);
  expect(performance.now() - t).toBeLessThan(1000);

  t = performance.now();
  await sleep(10_000, ac.signal);
  await sleep(-5);
  expect(performance.now() - t).toBeLessThan(50);
});
