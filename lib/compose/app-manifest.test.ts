import { describe, expect, test } from "bun:test";
import { appManifest } from "./app-manifest.ts";

describe("appManifest", () => {
  test("has the exact shape of a composeapp app manifest", () => {
    const bundle = { digest: "sha256:" + "1".repeat(64), size: 1234 };
    const index = { digest: "sha256:" + "2".repeat(64), size: 56 };
    const { manifest, bytes, digest } = appManifest(bundle, index);
    expect(JSON.parse(new TextDecoder().decode(bytes))).toEqual({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      artifactType: "application/vnd.fio+compose-app",
      config: {
        mediaType: "application/vnd.oci.empty.v1+json",
        digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        size: 2,
      },
      layers: [
        {
          mediaType: "application/octet-stream",
          digest: bundle.digest,
          size: 1234,
          annotations: {
            "org.foundries.app.bundle.index.digest": index.digest,
            "org.foundries.app.bundle.index.size": "56",
          },
        },
      ],
      annotations: { "compose-app": "v1" },
    });
    expect(manifest.layers[0].size).toBe(1234);
    expect(digest).toBe("sha256:" + new Bun.CryptoHasher("sha256").update(bytes).digest("hex"));
    expect(appManifest(bundle, index).digest).toBe(digest);
  });

  test("the empty config digest is sha256 of {}", () => {
    expect(new Bun.CryptoHasher("sha256").update("{}").digest("hex")).toBe(
      "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    );
  });
});
