import { describe, expect, test } from "bun:test";
import type { TargetEntry } from "../api/target.ts";
import { EMPTY_SHA256, targetContent } from "../api/target.ts";
import { selectTarget } from "./select-target.ts";

const entry = (version: number, hardwareIds = ["rpi"], tags = ["main"]): TargetEntry => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: { version: String(version), hardwareIds, tags, docker_compose_apps: {} },
});

const targets: Record<string, TargetEntry> = {
  "rpi-1": entry(1),
  "rpi-2": entry(2),
  "rpi-10": entry(10), // numerically highest, lexically not
  "rpi-11": entry(11, ["rpi"], ["devel"]),
  "x86-20": entry(20, ["x86"]),
};

describe("selectTarget", () => {
  test("picks the numerically highest version for the hardware id", () => {
    expect(selectTarget(targets, { hwid: "rpi", tags: ["main"] })?.name).toBe("rpi-10");
    expect(selectTarget(targets, { hwid: "x86", tags: [] })?.name).toBe("x86-20");
    expect(selectTarget(targets, { hwid: "riscv", tags: [] })).toBeUndefined();
  });

  test("requires a shared tag, and no device tags means any", () => {
    expect(selectTarget(targets, { hwid: "rpi", tags: ["devel"] })?.name).toBe("rpi-11");
    expect(selectTarget(targets, { hwid: "rpi", tags: ["main", "devel"] })?.name).toBe("rpi-11");
    expect(selectTarget(targets, { hwid: "rpi", tags: [] })?.name).toBe("rpi-11");
    expect(selectTarget(targets, { hwid: "rpi", tags: ["qa"] })).toBeUndefined();
  });

  test("never downgrades; the running version is returned as up to date", () => {
    expect(selectTarget(targets, { hwid: "rpi", tags: ["main"], currentVersion: "12" })).toBeUndefined();
    expect(selectTarget(targets, { hwid: "rpi", tags: ["main"], currentVersion: 10 })?.name).toBe("rpi-10");
  });

  test("an explicitly named version is taken even if older", () => {
    expect(selectTarget(targets, { hwid: "rpi", tags: ["main"], currentVersion: "10", version: "2" })?.name).toBe("rpi-2");
    expect(selectTarget(targets, { hwid: "rpi", tags: ["main"], version: 3 })).toBeUndefined();
    expect(selectTarget(targets, { hwid: "rpi", tags: ["main"], version: "x" })).toBeUndefined();
  });

  test("skips a bad target until a newer one appears", () => {
    const bad = new Map([["rpi-10", targetContent(targets["rpi-10"]!)]]);
    expect(selectTarget(targets, { hwid: "rpi", tags: ["main"], currentVersion: "2", badTargets: bad })?.name).toBe("rpi-2");
    const newer = { ...targets, "rpi-12": entry(12) };
    expect(selectTarget(newer, { hwid: "rpi", tags: ["main"], currentVersion: "2", badTargets: bad })?.name).toBe("rpi-12");
  });

  test("a bad target's name published again with other apps is taken (a fix); with the same apps, or a mark without content, it is not", () => {
    const failed = targets["rpi-10"]!;
    const fixed = { ...failed, custom: { ...failed.custom, docker_compose_apps: { web: { uri: `hub.example/web@sha256:${"f".repeat(64)}` } } } };
    const bad = new Map([["rpi-10", targetContent(failed)]]);
    expect(selectTarget({ ...targets, "rpi-10": fixed }, { hwid: "rpi", tags: ["main"], currentVersion: "2", badTargets: bad })?.name).toBe("rpi-10");
    expect(selectTarget({ ...targets, "rpi-10": { ...failed, custom: { ...failed.custom, createdAt: "later" } } }, { hwid: "rpi", tags: ["main"], currentVersion: "2", badTargets: bad })?.name).toBe("rpi-2");
    expect(selectTarget({ ...targets, "rpi-10": fixed }, { hwid: "rpi", tags: ["main"], currentVersion: "2", badTargets: new Map([["rpi-10", null]]) })?.name).toBe("rpi-2");
  });
});
