import { describe, expect, test } from "bun:test";
import { RegistryRequestError } from "./errors.ts";
import { DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, parseManifest } from "./manifest.ts";

const d = (c: string) => `sha256:${c.repeat(64)}`;
const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const image = (extra: Record<string, unknown> = {}) => ({
  schemaVersion: 2,
  config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: d("a"), size: 10 },
  layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: d("b"), size: 20 }],
  ...extra,
});

describe("parseManifest", () => {
  test("lists the config and layers an image manifest needs", () => {
    const m = parseManifest(enc(image({ mediaType: OCI_MANIFEST })), OCI_MANIFEST);
    expect(m.mediaType).toBe(OCI_MANIFEST);
    expect(m.blobs).toEqual([{ digest: d("a"), size: 10 }, { digest: d("b"), size: 20 }]);
    expect(m.artifactType).toBe("application/vnd.oci.image.config.v1+json");
  });
  test("takes the media type from Content-Type when the body has none, else infers it", () => {
    expect(parseManifest(enc(image()), DOCKER_MANIFEST).mediaType).toBe(DOCKER_MANIFEST);
    expect(parseManifest(enc(image()), undefined).mediaType).toBe(OCI_MANIFEST);
    expect(parseManifest(enc({ schemaVersion: 2, manifests: [] }), "application/json").mediaType).toBe(OCI_INDEX);
  });
  test("refuses a Content-Type that contradicts the body", () => {
    expect(() => parseManifest(enc(image({ mediaType: OCI_MANIFEST })), DOCKER_MANIFEST)).toThrow(RegistryRequestError);
  });
  test("refuses schema 1, unknown types and bad descriptors", () => {
    expect(() => parseManifest(enc({ schemaVersion: 1 }), undefined)).toThrow(/schemaVersion/);
    expect(() => parseManifest(enc(image({ mediaType: "application/x-unknown" })), undefined)).toThrow(/Unsupported/);
    expect(() => parseManifest(enc(image({ layers: [{ mediaType: "x", digest: "sha256:short", size: 1 }] })), undefined)).toThrow(/layers\[0\]/);
    expect(() => parseManifest(new TextEncoder().encode("{"), undefined)).toThrow(/JSON/);
  });
  test("reads subject and artifactType of an artifact", () => {
    const m = parseManifest(enc(image({ artifactType: "application/vnd.example", subject: { mediaType: OCI_MANIFEST, digest: d("c"), size: 5 } })), OCI_MANIFEST);
    expect(m.subject).toBe(d("c"));
    expect(m.artifactType).toBe("application/vnd.example");
  });
});
