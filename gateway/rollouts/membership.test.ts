import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { InvalidRolloutError } from "./errors.ts";
import { assignWaves, checkWaves, rolloutOrder, waveSizes } from "./membership.ts";

const uuids = (n: number) => Array.from({ length: n }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`);

describe("rollout membership", () => {
  test("waves take ceil(percent of the audience) devices, cumulative, at least one", () => {
    expect(waveSizes(202, [1, 10, 100])).toEqual([3, 21, 202]);
    expect(waveSizes(100, [1, 10, 50, 100])).toEqual([1, 10, 50, 100]); // no floating-point 11
    expect(waveSizes(3, [1, 10, 100])).toEqual([1, 1, 3]);
    expect(waveSizes(100_000, [1, 10, 100])).toEqual([1000, 10_000, 100_000]);
    expect(waveSizes(0, [1, 100])).toEqual([0, 0]);
  });

  test("the order is by sha256 of the uuid: the same devices first every time, whatever the input order", () => {
    const all = uuids(50);
    const order = rolloutOrder(all);
    expect(rolloutOrder([...all].reverse())).toEqual(order);
    const byHash = [...all].sort((a, b) => (createHash("sha256").update(a).digest("hex") < createHash("sha256").update(b).digest("hex") ? -1 : 1));
    expect(order).toEqual(byHash);
    expect(order).not.toEqual(all); // spread, not the uuid order
  });

  test("devices named first go into the first wave, in the order given", () => {
    const all = uuids(100);
    const first = [all[97]!, all[3]!, all[50]!];
    const members = assignWaves(all, [1, 10, 100], first);
    expect(members.slice(0, 3)).toEqual(first.map((uuid) => ({ uuid, wave: 0 })));
    expect(members.filter((m) => m.wave === 0)).toHaveLength(3); // 1% of 100 is 1, but all three named go first
    expect(members.filter((m) => m.wave <= 1)).toHaveLength(10);
    expect(new Set(members.map((m) => m.uuid)).size).toBe(100);
  });

  test("a first device outside the audience and bad waves are refused with a clear reason", () => {
    expect(() => assignWaves(uuids(5), [100], ["nope"])).toThrow(new InvalidRolloutError('Device "nope" given in first is not in the rollout\'s audience'));
    expect(() => checkWaves([10, 5, 100])).toThrow(/must increase/);
    expect(() => checkWaves([1, 10])).toThrow(/last wave must be 100%/);
    expect(() => checkWaves([])).toThrow(/at least one/);
    // As many as the API takes (MAX_WAVES), so the CLI refuses 21 before it sends anything.
    expect(() => checkWaves(Array.from({ length: 20 }, (_, i) => 5 * (i + 1)))).not.toThrow();
    expect(() => checkWaves(Array.from({ length: 21 }, (_, i) => (100 * (i + 1)) / 21))).toThrow(new InvalidRolloutError("Invalid waves: 21 of them, at most 20"));
  });
});
