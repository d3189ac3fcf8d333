import { describe, expect, test } from "bun:test";
import { InvalidManifestError, parseManifest } from "./manifest.ts";
import { isIndexMediaType, layerCompression, MediaType, sniffCompression } from "./media-types.ts";

const d = (c: string) => `sha256:${c.repeat(64)}`;
const manifest = {
  schemaVersion: 2,
  mediaType: MediaType.DockerManifest,
  config: { mediaType: MediaType.DockerConfig, digest: d("a"), size: 10 },
  layers: [{ mediaType: MediaType.DockerLayerGzip, digest: d("b"), size: 20 }],
};

describe("parseManifest", () => {
  test("reads Docker schema2 and OCI manifests and indexes", () => {
    const m = parseManifest(JSON.stringify(manifest));
    expect(m.kind).toBe("manifest");
    expect(m.mediaType).toBe(MediaType.DockerManifest);
    const i = parseManifest(JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MediaType.OciManifest, digest: d("c"), size: 1 }] }), `${MediaType.OciIndex}; charset=utf-8`);
    expect(i.kind).toBe("index");
    expect(i.mediaType).toBe(MediaType.OciIndex);
  });
  test("takes the media type from Content-Type when the document has none", () => {
    const { mediaType: _, ...bare } = manifest;
    expect(parseManifest(JSON.stringify(bare), MediaType.DockerManifest).mediaType).toBe(MediaType.DockerManifest);
    expect(parseManifest(JSON.stringify(bare)).mediaType).toBe(MediaType.OciManifest);
  });
  test("rejects non-JSON, schema 1, bad digests, negative sizes and unknown types", () => {
    const bad = [
      "not json",
      JSON.stringify({ schemaVersion: 1 }),
      JSON.stringify({ ...manifest, config: { ...manifest.config, digest: "sha256:xyz" } }),
      JSON.stringify({ ...manifest, layers: [{ ...manifest.layers[0], size: -1 }] }),
      JSON.stringify({ ...manifest, mediaType: "application/json" }),
      JSON.stringify({ ...manifest, layers: undefined }),
    ];
    for (const b of bad) expect(() => parseManifest(b)).toThrow(InvalidManifestError);
  });
});

describe("media types", () => {
  test("classify layers and indexes, and sniff compression", () => {
    expect(layerCompression(MediaType.OciLayerZstd)).toBe("zstd");
    expect(layerCompression(MediaType.DockerLayerGzip)).toBe("gzip");
    expect(layerCompression(MediaType.OciLayer)).toBe("none");
    expect(layerCompression("application/json")).toBeUndefined();
    expect(isIndexMediaType(MediaType.DockerManifestList)).toBe(true);
    expect(sniffCompression(Bun.gzipSync(new Uint8Array([1])))).toBe("gzip");
    expect(sniffCompression(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd]))).toBe("zstd");
    expect(sniffCompression(new Uint8Array([0x61]))).toBe("none");
  });
});
