/**
 * Who is in which wave. The audience is ordered by sha256 of the device uuid (not salted: the
 * same devices come first in every rollout, so the canaries are the same devices each time and
 * an operator can learn them), after the devices the operator names `first`. Wave k takes the
 * devices up to ceil(percent_k * N / 100) of that order, at least one.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { InvalidRolloutError } from "./errors.ts";
import { MAX_WAVES } from "../../lib/api/admin.ts";

export interface Member {
  uuid: string;
  /** 0-based index of the wave that releases the target to this device. */
  wave: number;
}

/** Checks cumulative wave percents: increasing, each in (0, 100], the last 100. */
export function checkWaves(waves: readonly number[]): void {
  if (waves.length === 0) throw new InvalidRolloutError("Invalid waves: give at least one, e.g. 1%,10%,100%");
  if (waves.length > MAX_WAVES) throw new InvalidRolloutError(`Invalid waves: ${waves.length} of them, at most ${MAX_WAVES}`);
  let prev = 0;
  for (const p of waves) {
    if (!Number.isFinite(p) || p <= prev || p > 100)
      throw new InvalidRolloutError(`Invalid waves ${waves.map((w) => `${w}%`).join(",")}: percents of the audience must increase, each above 0 and at most 100`);
    prev = p;
  }
  if (prev !== 100) throw new InvalidRolloutError(`Invalid waves ${waves.map((w) => `${w}%`).join(",")}: the last wave must be 100% (pause the rollout to stop early)`);
}

/** The audience in rollout order: `first` as given, then the rest by sha256(uuid). */
export function rolloutOrder(audience: readonly string[], first: readonly string[] = []): string[] {
  const inAudience = new Set(audience);
  const firstSet = new Set<string>();
  for (const uuid of first) {
    if (!inAudience.has(uuid)) throw new InvalidRolloutError(`Device "${uuid}" given in first is not in the rollout's audience`);
    firstSet.add(uuid);
  }
  const rest = [...inAudience]
    .filter((u) => !firstSet.has(u))
    .map((uuid) => ({ uuid, h: createHash("sha256").update(uuid).digest("hex") }))
    .sort((a, b) => (a.h < b.h ? -1 : a.h > b.h ? 1 : 0));
  return [...firstSet, ...rest.map((r) => r.uuid)];
}

/**
 * How many devices the waves release in all, wave by wave (cumulative). Every `first` device is
 * in the first wave, even beyond its percent.
 */
export function waveSizes(n: number, waves: readonly number[], firstCount = 0): number[] {
  const sizes: number[] = [];
  let prev = 0;
  for (const [k, p] of waves.entries()) {
    // - 1e-9: 10% of 100 is 10.000000000000002 in floating point, and must not become 11
    let size = Math.min(n, Math.max(n > 0 ? 1 : 0, Math.ceil((p * n) / 100 - 1e-9)));
    if (k === 0) size = Math.max(size, Math.min(n, firstCount));
    size = Math.max(size, prev);
    sizes.push(size);
    prev = size;
  }
  return sizes;
}

/** Assigns every audience device its wave. */
export function assignWaves(audience: readonly string[], waves: readonly number[], first: readonly string[] = []): Member[] {
  checkWaves(waves);
  const order = rolloutOrder(audience, first);
  const sizes = waveSizes(order.length, waves, new Set(first).size);
  const members: Member[] = [];
  let wave = 0;
  for (const [i, uuid] of order.entries()) {
    while (i >= sizes[wave]!) wave++;
    members.push({ uuid, wave });
  }
  return members;
}
