/** The platform an image is for: --platform, the hardware id, the one architecture built, else amd64. */
import { expect, test } from "bun:test";
import { imagePlatform } from "./platform.ts";

test("--platform wins; then the hardware id (the factory's map first); then the one platform built; else linux/amd64", () => {
  const arm = { os: "linux", architecture: "arm", variant: "v7" };
  expect(imagePlatform({ platform: arm, hwid: "arm64-linux", containers: undefined })).toEqual({ platform: arm, from: "--platform" });
  expect(imagePlatform({ hwid: "arm64-linux", containers: undefined })).toMatchObject({ platform: { architecture: "arm64" }, from: "--hwid arm64-linux" });
  expect(imagePlatform({ hwid: "board", containers: { platforms: { board: "linux/arm/v7" } } }).platform).toMatchObject(arm);
  expect(imagePlatform({ hwid: "board", containers: { platforms: ["arm64"] } }).platform).toMatchObject({ architecture: "arm64" });
  expect(imagePlatform({ hwid: "board", containers: { platforms: ["arm64", "amd64"] } }).platform).toEqual({ os: "linux", architecture: "amd64" });
});
