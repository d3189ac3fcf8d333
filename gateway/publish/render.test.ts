import { describe, expect, test } from "bun:test";
import type { PublishResult } from "./publish.ts";
import { renderPublish } from "./render.ts";

const result = (pushed: PublishResult["pushed"]): PublishResult => ({
  factory: "main",
  registry: "127.0.0.1:8443",
  ref: "refs/heads/master",
  commit: "0123456789abcdef0123456789abcdef01234567",
  tags: ["master"],
  hardwareIds: ["x86_64-linux"],
  platforms: { "x86_64-linux": "linux/amd64" },
  version: 2,
  dryRun: false,
  apps: [],
  images: [],
  targets: {},
  pushed,
  durationMs: 1200,
});

describe("renderPublish", () => {
  test("the closing line counts blobs and manifests in words that agree with the number", () => {
    expect(renderPublish(result({ bytes: 2048, blobs: 1, blobsPresent: 1, blobsMounted: 0, manifests: 1 }))).toContain(
      "Pushed 2.0 KiB (1 blob, 1 manifest; 1 blob already present). Commit 0123456789ab, 1.2 s.",
    );
    expect(renderPublish(result({ bytes: 0, blobs: 0, blobsPresent: 7, blobsMounted: 0, manifests: 0 }))).toContain("Pushed 0 B (0 blobs, 0 manifests; 7 blobs already present)");
  });
});
