/**
 * Mirroring an image between two real docker-registries: the digest stays the source's, the
 * copy pulls back byte-exact, and a second copy downloads no blob and uploads nothing.
 */
import { afterAll, beforeAll, expect, test, setDefaultTimeout } from "bun:test";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { buildBusyboxImage } from "../harness/images.ts";
import { tempDir } from "../harness/tmp.ts";
import { BlobStore, copyRegistryToRegistry, pullImage, pushImageFromStore, RegistryClient } from "../../lib/oci/index.ts";

setDefaultTimeout(60_000);

let src: DockerRegistryHandle;
let dst: DockerRegistryHandle;

beforeAll(async () => {
  [src, dst] = await Promise.all([startDockerRegistry(), startDockerRegistry()]);
}, 60_000);
afterAll(async () => {
  await Promise.all([src?.stop(), dst?.stop()]);
});

test("copyRegistryToRegistry copies byte-exact, and again without moving a blob", async () => {
  const img = await buildBusyboxImage({ files: { "/m.txt": "mirror me\n" }, layers: [{ "/two.txt": "2\n" }] });
  const from = new RegistryClient({ registry: src.host, scheme: "http" });
  const to = new RegistryClient({ registry: dst.host, scheme: "http" });
  const store = new BlobStore(await tempDir("oci-copy-src-"));
  for (const l of img.layers) await store.writeBytes(l.gz);
  await store.writeBytes(img.config);
  await store.writeBytes(img.manifest);
  await pushImageFromStore(from, "up/app", "1", store, img.manifestDigest);

  const first = await copyRegistryToRegistry({ client: from, repo: "up/app", ref: "1" }, { client: to, repo: "main/app", ref: "1" }, new BlobStore(await tempDir("oci-copy-stage-")));
  expect(first.digest).toBe(img.manifestDigest);
  expect(first.uploaded).toBe(1 + img.layers.length);
  expect(first.fetched).toBeGreaterThan(img.manifest.byteLength);
  const pulled = await pullImage(to, "main/app", "1", new BlobStore(await tempDir("oci-copy-pull-")));
  expect(pulled.configDigest).toBe(img.configDigest);

  const again = await copyRegistryToRegistry({ client: from, repo: "up/app", ref: "1" }, { client: to, repo: "main/app", ref: "2" }, new BlobStore(await tempDir("oci-copy-stage2-")));
  expect(again.digest).toBe(img.manifestDigest);
  expect(again.uploadedBytes).toBe(0);
  expect(again.skipped).toBe(1 + img.layers.length);
  expect(again.fetched).toBe(img.manifest.byteLength);
});
