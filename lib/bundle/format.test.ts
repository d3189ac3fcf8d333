import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DELTA_MEDIA_TYPE } from "../oci/delta.ts";
import { digestBytes } from "../oci/digest.ts";
import { BUNDLE_FORMAT, BUNDLE_FORMAT_DELTAS, InvalidBundleError, openBundle, type BundleIndex } from "./format.ts";

const root = mkdtempSync(join(tmpdir(), "bundle-format-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const blob = new TextEncoder().encode("layer bytes");
const digest = digestBytes(blob);

/** A small valid bundle; `edit` changes its index before it is written. */
function makeBundle(name: string, edit: (i: BundleIndex) => void = () => {}): string {
  const dir = join(root, name);
  mkdirSync(join(dir, "blobs/sha256"), { recursive: true });
  mkdirSync(join(dir, "tuf"), { recursive: true });
  writeFileSync(join(dir, "blobs/sha256", digest.slice(7)), blob);
  writeFileSync(join(dir, "tuf/1.root.json"), "{}");
  const index: BundleIndex = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [],
    bundle: {
      format: BUNDLE_FORMAT, target: "amd64-linux-2", version: "2", hwid: "amd64-linux", platform: "linux/amd64", createdAt: new Date().toISOString(),
      tuf: ["1.root.json"],
      blobs: [{ digest, size: blob.byteLength, kind: "layer", mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", registry: "gw:8443", repo: "main/app" }],
      bytes: blob.byteLength,
    },
  };
  edit(index);
  writeFileSync(join(dir, "index.json"), JSON.stringify(index));
  return dir;
}

describe("openBundle", () => {
  test("opens a complete bundle and names it by the sha256 of its index.json", async () => {
    const b = await openBundle(makeBundle("ok"));
    expect(b.index.bundle.target).toBe("amd64-linux-2");
    expect(b.id).toMatch(/^[0-9a-f]{64}$/);
  });

  test("refuses a directory without index.json (an unfinished copy)", async () => {
    const dir = join(root, "empty");
    mkdirSync(dir);
    await expect(openBundle(dir)).rejects.toThrow(/no index\.json/);
  });

  test("a path that is no directory says so: missing, or a file such as the bundle's own index.json", async () => {
    await expect(openBundle(join(root, "nowhere"))).rejects.toThrow(`Cannot open the bundle ${join(root, "nowhere")}: no such directory`);
    const index = join(makeBundle("given-a-file"), "index.json");
    await expect(openBundle(index)).rejects.toThrow(`Cannot open the bundle ${index}: it is a file; give the bundle's directory`);
  });

  test("refuses another format, a missing blob, and a blob of another size", async () => {
    await expect(openBundle(makeBundle("fmt", (i) => ((i.bundle as { format: number }).format = 3)))).rejects.toThrow(InvalidBundleError);
    await expect(openBundle(makeBundle("missing", (i) => (i.bundle.blobs[0]!.digest = `sha256:${"0".repeat(64)}`)))).rejects.toThrow(/is missing/);
    await expect(openBundle(makeBundle("size", (i) => (i.bundle.blobs[0]!.size = 3)))).rejects.toThrow(/has 11 bytes/);
    await expect(openBundle(makeBundle("tuf", (i) => (i.bundle.tuf = ["2.root.json"])))).rejects.toThrow(/tuf\/2\.root\.json is missing/);
  });

  test("opens a format 2 bundle with layer deltas, and checks their files as it checks blobs", async () => {
    const withDeltas = (from: string | undefined, format: number, size = blob.byteLength) => (i: BundleIndex) => {
      i.bundle.format = format as typeof BUNDLE_FORMAT;
      if (from) i.bundle.from = from;
      else delete i.bundle.from;
      const [layer] = i.bundle.blobs.splice(0, 1);
      // The test's one file stands in for the delta (the reader checks presence and size only).
      i.bundle.deltas = [{ mediaType: DELTA_MEDIA_TYPE, digest, size, from: `sha256:${"a".repeat(64)}`, to: `sha256:${"b".repeat(64)}`, fromSize: 1, toSize: 1, windowLog: 27, registry: layer!.registry, repo: layer!.repo }];
    };
    const b = await openBundle(makeBundle("deltas", withDeltas("1", BUNDLE_FORMAT_DELTAS)));
    expect(b.index.bundle.deltas?.[0]?.to).toBe(`sha256:${"b".repeat(64)}`);
    await expect(openBundle(makeBundle("deltas-v1", withDeltas("1", BUNDLE_FORMAT)))).rejects.toThrow(/not a format 2 bundle made --from/);
    await expect(openBundle(makeBundle("deltas-nofrom", withDeltas(undefined, BUNDLE_FORMAT_DELTAS)))).rejects.toThrow(/not a format 2 bundle made --from/);
    await expect(openBundle(makeBundle("deltas-size", withDeltas("1", BUNDLE_FORMAT_DELTAS, 5)))).rejects.toThrow(/has 11 bytes/);
  });

  test("refuses metadata file names outside what the gateway serves", async () => {
    await expect(openBundle(makeBundle("names", (i) => (i.bundle.tuf = ["../../etc/passwd"])))).rejects.toThrow(InvalidBundleError);
  });
});
