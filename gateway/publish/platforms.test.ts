import { describe, expect, test } from "bun:test";
import { checkPlatforms, hwidPlatforms, MissingPlatformError, UnknownHwidPlatformError } from "./platforms.ts";
import { platformOfConfig } from "../../lib/oci/platform.ts";

describe("hwidPlatforms", () => {
  test("maps ids by the built-in map, overrides first, the fallback for the rest", () => {
    const m = hwidPlatforms(["amd64-linux", "board-x", "arm64-linux"], { "board-x": "linux/arm/v7" }, undefined);
    expect([...m.entries()]).toEqual([
      ["amd64-linux", { os: "linux", architecture: "amd64" }],
      ["board-x", { os: "linux", architecture: "arm", variant: "v7" }],
      ["arm64-linux", { os: "linux", architecture: "arm64", variant: "v8" }],
    ]);
    expect(hwidPlatforms(["board-y"], {}, { os: "linux", architecture: "riscv64" }).get("board-y")).toEqual({ os: "linux", architecture: "riscv64" });
  });

  test("an unknown id without a fallback says how to map it", () => {
    expect(() => hwidPlatforms(["board-y"], {}, undefined)).toThrow(UnknownHwidPlatformError);
    expect(() => hwidPlatforms(["board-y"], {}, undefined)).toThrow("--hwid-platform board-y=");
  });
});

describe("checkPlatforms", () => {
  const amd64 = { os: "linux", architecture: "amd64" };
  const arm64 = { os: "linux", architecture: "arm64" };
  test("passes when every image offers every hardware id's platform (arm64 means v8)", () => {
    checkPlatforms([{ image: "a", where: "app x", platforms: [amd64, { ...arm64, variant: "v8" }] }], hwidPlatforms(["amd64-linux", "arm64-linux"], {}, undefined));
  });

  test("lists every image and hardware id that do not match", () => {
    let err: unknown;
    try {
      checkPlatforms(
        [
          { image: "a (build)", where: 'app "x" service "a"', platforms: [amd64] },
          { image: "b", where: 'app "x" service "b"', platforms: [amd64, arm64] },
          { image: "c", where: 'app "y" service "c"', platforms: [] },
        ],
        hwidPlatforms(["amd64-linux", "arm64-linux"], {}, undefined),
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MissingPlatformError);
    expect((err as MissingPlatformError).missing.map((m) => `${m.image}/${m.hwid}`)).toEqual(["a (build)/arm64-linux", "c/amd64-linux", "c/arm64-linux"]);
    expect((err as Error).message).toContain('app "x" service "a": a (build) offers linux/amd64; arm64-linux needs linux/arm64/v8');
  });
});

test("platformOfConfig reads os, architecture and variant of an image config", () => {
  expect(platformOfConfig(new TextEncoder().encode('{"os":"linux","architecture":"arm","variant":"v7","config":{}}'))).toEqual({ os: "linux", architecture: "arm", variant: "v7" });
  expect(platformOfConfig(new TextEncoder().encode("{}"))).toBeUndefined();
  expect(platformOfConfig(new TextEncoder().encode("not json"))).toBeUndefined();
});
