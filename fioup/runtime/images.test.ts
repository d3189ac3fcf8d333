import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { writeOciLayout } from "../../test/harness/images.ts";
import { tempDir } from "../../test/harness/tmp.ts";
import { BlobNotInStoreError, CorruptBlobError } from "./_store.ts";
import { localTag, NoMatchingPlatformError, resolveStoredImage, UnpinnedImageError } from "./images.ts";

// bunfig's [test] timeout is ignored by this Bun; these tests spawn processes and write files.
setDefaultTimeout(30_000);

const D = `sha256:${"0123456789abcdef".repeat(4)}`;

describe("localTag", () => {
  test("derives <repository>:fioup-<32 hex> from a pinned reference", () => {
    expect(localTag(`127.0.0.1:5000/main/app@${D}`)).toEqual({
      repository: "127.0.0.1:5000/main/app",
      tag: "fioup-0123456789abcdef0123456789abcdef",
      full: "127.0.0.1:5000/main/app:fioup-0123456789abcdef0123456789abcdef",
      digest: D,
    });
  });

  test("drops a tag written beside the digest and keeps Docker Hub names as written", () => {
    expect(localTag(`nginx:1.25@${D}`).full).toBe("nginx:fioup-0123456789abcdef0123456789abcdef");
    expect(localTag(`hub.example.com:443/a/b:v1@${D}`).repository).toBe("hub.example.com:443/a/b");
  });

  test("refuses a reference without a digest", () => {
    expect(() => localTag("nginx:latest")).toThrow(UnpinnedImageError);
  });
});

describe("resolveStoredImage", () => {
  test("returns the manifest a reference pins", async () => {
    const store = await tempDir("store-");
    const lay = await writeOciLayout(store, { cmd: ["true"] });
    const r = await resolveStoredImage(store, `r.example/a/b@${lay.digest}`);
    expect(r.manifestDigest).toBe(lay.digest);
    expect(r.manifest.config.digest).toBe(lay.images[0]!.configDigest);
  });

  test("picks the requested platform from an index", async () => {
    const store = await tempDir("store-");
    const lay = await writeOciLayout(store, { cmd: ["true"], platforms: ["linux/amd64", "linux/arm64", "linux/arm/v7"] });
    const arm = await resolveStoredImage(store, `r.example/a/b@${lay.digest}`, { os: "linux", architecture: "arm", variant: "v7" });
    expect(arm.manifestDigest).toBe(lay.images[2]!.manifestDigest);
    const arm64 = await resolveStoredImage(store, `r.example/a/b@${lay.digest}`, { os: "linux", architecture: "arm64" });
    expect(arm64.manifestDigest).toBe(lay.images[1]!.manifestDigest);
    await expect(resolveStoredImage(store, `r.example/a/b@${lay.digest}`, { os: "linux", architecture: "riscv64" })).rejects.toThrow(NoMatchingPlatformError);
  });

  test("reports a manifest missing from the store, or one whose bytes do not match its digest", async () => {
    const store = await tempDir("store-");
    await expect(resolveStoredImage(store, `r.example/a/b@${D}`)).rejects.toThrow(BlobNotInStoreError);
    const lay = await writeOciLayout(store, { cmd: ["true"] });
    await Bun.write(`${store}/blobs/sha256/${lay.digest.slice(7)}`, "{}");
    await expect(resolveStoredImage(store, `r.example/a/b@${lay.digest}`)).rejects.toThrow(CorruptBlobError);
  });
});
