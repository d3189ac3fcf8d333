import { describe, expect, test } from "bun:test";
import { selectPlatformManifest, NoMatchingPlatformError } from "./image.ts";
import type { ImageIndex } from "./manifest.ts";
import { formatPlatform, normalizePlatform, parsePlatform, platformMatches, platformRank } from "./platform.ts";

const d = (c: string) => `sha256:${c.repeat(64)}`;
const M = "application/vnd.oci.image.manifest.v1+json";
const index: ImageIndex = {
  schemaVersion: 2,
  manifests: [
    { mediaType: M, digest: d("a"), size: 1, platform: { os: "linux", architecture: "amd64" } },
    { mediaType: M, digest: d("b"), size: 1, platform: { os: "linux", architecture: "arm64", variant: "v8" } },
    { mediaType: M, digest: d("c"), size: 1, platform: { os: "linux", architecture: "arm", variant: "v7" } },
    { mediaType: M, digest: d("e"), size: 1, platform: { os: "unknown", architecture: "unknown" } },
  ],
};

describe("platforms", () => {
  test("parse, format and normalize", () => {
    expect(parsePlatform("linux/arm64/v8")).toEqual({ os: "linux", architecture: "arm64", variant: "v8" });
    expect(formatPlatform(parsePlatform("linux/amd64"))).toBe("linux/amd64");
    expect(normalizePlatform({ os: "linux", architecture: "aarch64" })).toEqual({ os: "linux", architecture: "arm64", variant: "v8" });
    expect(normalizePlatform({ os: "linux", architecture: "arm" }).variant).toBe("v7");
    expect(() => parsePlatform("linux")).toThrow(SyntaxError);
    expect(platformMatches({ os: "linux", architecture: "arm64" }, { os: "linux", architecture: "arm64", variant: "v8" })).toBe(true);
    expect(platformMatches({ os: "linux", architecture: "arm", variant: "v6" }, { os: "linux", architecture: "arm", variant: "v7" })).toBe(false);
  });
  test("selectPlatformManifest picks the matching entry, arm64 without variant meaning v8", () => {
    expect(selectPlatformManifest(index, parsePlatform("linux/amd64")).digest).toBe(d("a"));
    expect(selectPlatformManifest(index, parsePlatform("linux/arm64")).digest).toBe(d("b"));
    expect(selectPlatformManifest(index, parsePlatform("linux/arm/v7")).digest).toBe(d("c"));
  });
  test("an older variant the CPU runs is taken when the same one is missing, the nearest first, as containerd ranks them", () => {
    const arm = (...variants: string[]): ImageIndex => ({
      schemaVersion: 2,
      manifests: variants.map((v, i) => ({ mediaType: M, digest: d(String(i)), size: 1, platform: { os: "linux", architecture: "arm", variant: v } })),
    });
    expect(selectPlatformManifest(arm("v5", "v6"), parsePlatform("linux/arm/v7")).digest).toBe(d("1")); // v6 before v5, whatever the order
    expect(selectPlatformManifest(arm("v6", "v7", "v5"), parsePlatform("linux/arm/v7")).digest).toBe(d("1")); // the same variant first
    expect(selectPlatformManifest(arm("v6"), parsePlatform("linux/arm")).digest).toBe(d("0")); // arm means v7
    expect(() => selectPlatformManifest(arm("v7"), parsePlatform("linux/arm/v6"))).toThrow(NoMatchingPlatformError); // never a newer one
    expect(platformRank(parsePlatform("linux/arm/v7"), parsePlatform("linux/arm/v5"))).toBe(2);
    expect(platformMatches(parsePlatform("linux/amd64/v3"), parsePlatform("linux/amd64"))).toBe(true);
    expect(platformMatches(parsePlatform("linux/amd64"), parsePlatform("linux/amd64/v3"))).toBe(false);
    expect(platformMatches(parsePlatform("linux/arm64"), parsePlatform("linux/arm/v7"))).toBe(false);
    expect(platformMatches(parsePlatform("linux/arm64/v8"), parsePlatform("linux/arm64/v9"))).toBe(false);
  });
  test("selectPlatformManifest names the available platforms when none matches", () => {
    expect(() => selectPlatformManifest(index, parsePlatform("linux/riscv64"))).toThrow(NoMatchingPlatformError);
    try {
      selectPlatformManifest(index, parsePlatform("linux/s390x"));
    } catch (err) {
      expect((err as NoMatchingPlatformError).available).toEqual(["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]);
    }
  });
});
