import { describe, expect, test } from "bun:test";
import { EMPTY_SHA256, type TargetEntry } from "../../lib/api/target.ts";
import { pruneTargets } from "./retention.ts";

const entry = (version: number, hardwareIds: string[]): TargetEntry => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: { version: String(version), hardwareIds, tags: ["main"], docker_compose_apps: {} },
});

describe("pruneTargets", () => {
  test("keeps the newest N per hardware id by numeric version", () => {
    const targets: Record<string, TargetEntry> = {};
    for (const v of [1, 2, 9, 10, 11]) targets[`rpi-${v}`] = entry(v, ["rpi"]);
    targets["x86-1"] = entry(1, ["x86"]);
    const { kept, pruned } = pruneTargets(targets, 3);
    expect(Object.keys(kept).sort()).toEqual(["rpi-10", "rpi-11", "rpi-9", "x86-1"]);
    expect(pruned).toEqual(["rpi-1", "rpi-2"]);
  });

  test("a target for several hardware ids stays while it is recent for one of them", () => {
    const targets = { both: entry(1, ["a", "b"]), "a-2": entry(2, ["a"]) };
    expect(pruneTargets(targets, 1).pruned).toEqual([]);
    expect(pruneTargets({ ...targets, "b-3": entry(3, ["b"]) }, 1).pruned).toEqual(["both"]);
  });
});
