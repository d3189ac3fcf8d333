import { describe, expect, test } from "bun:test";
import type { Target } from "../../lib/api/index.ts";
import { hardwareIdMismatch } from "./current-target.ts";

const target = (hardwareIds: string[]): Target => ({
  name: "imx8-42",
  entry: { length: 0, hashes: {}, custom: { version: "42", hardwareIds, tags: [], docker_compose_apps: {} } },
});

describe("hardwareIdMismatch", () => {
  test("says nothing when the running target is for the device's hardware id, or nothing is known", () => {
    expect(hardwareIdMismatch("imx8", target(["imx8", "imx8mp"]))).toBeUndefined();
    expect(hardwareIdMismatch(undefined, target(["imx8"]))).toBeUndefined();
    expect(hardwareIdMismatch("imx8", undefined)).toBeUndefined();
  });

  test("names both hardware ids and the registration that ends the mismatch", () => {
    const w = hardwareIdMismatch("x86_64-linux", target(["imx8"]));
    expect(w).toContain("registered with hardware id x86_64-linux, but the target it runs, imx8-42, is for imx8");
    expect(w).toContain("If imx8 is its hardware id, register again: fioup register --force --hwid imx8 ");
    expect(hardwareIdMismatch("x86_64-linux", target(["imx8", "imx8mp"]))).toContain("If one of them is its hardware id");
  });
});
