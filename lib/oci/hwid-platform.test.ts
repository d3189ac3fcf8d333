import { describe, expect, test } from "bun:test";
import { hwidForPlatform, platformForHwid } from "./hwid-platform.ts";

describe("platformForHwid", () => {
  test("reads the architecture an id starts with", () => {
    expect(platformForHwid("amd64-linux")).toEqual({ os: "linux", architecture: "amd64" });
    expect(platformForHwid("x86_64-linux")).toEqual({ os: "linux", architecture: "amd64" });
    expect(platformForHwid("arm64-linux")).toEqual({ os: "linux", architecture: "arm64", variant: "v8" });
    expect(platformForHwid("aarch64")).toEqual({ os: "linux", architecture: "arm64", variant: "v8" });
    expect(platformForHwid("arm-linux")).toEqual({ os: "linux", architecture: "arm", variant: "v7" });
    expect(platformForHwid("armv6-linux")).toEqual({ os: "linux", architecture: "arm", variant: "v6" });
    expect(platformForHwid("riscv64-linux")).toEqual({ os: "linux", architecture: "riscv64" });
  });

  test("knows some LmP machines, and nothing else by guess", () => {
    expect(platformForHwid("raspberrypi4-64")).toEqual({ os: "linux", architecture: "arm64", variant: "v8" });
    expect(platformForHwid("intel-corei7-64")).toEqual({ os: "linux", architecture: "amd64" });
    expect(platformForHwid("my-board")).toBeUndefined();
    expect(platformForHwid("armadillo")).toBeUndefined();
  });

  test("an override wins", () => {
    expect(platformForHwid("amd64-linux", { "amd64-linux": "linux/arm64" })).toEqual({ os: "linux", architecture: "arm64", variant: "v8" });
    expect(() => platformForHwid("x", { x: "arm64" })).toThrow(SyntaxError);
  });
});

test("hwidForPlatform is the default id of a platform", () => {
  expect(hwidForPlatform({ architecture: "amd64" })).toBe("x86_64-linux");
  expect(hwidForPlatform({ architecture: "aarch64" })).toBe("arm64-linux");
  expect(hwidForPlatform({ architecture: "arm" })).toBe("arm-linux");
});
