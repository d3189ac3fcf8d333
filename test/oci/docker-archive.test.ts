import { afterAll, beforeAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { buildBusyboxImage, busyboxImageTar } from "../harness/images.ts";
import { tempDir } from "../harness/tmp.ts";
import { BlobStore, dockerArchiveStream, DockerArchiveError, MediaType, pullImage, pushDockerArchive, RegistryClient } from "../../lib/oci/index.ts";

// bunfig.toml's [test] timeout is not applied by bun 1.4.5: these tests start real services.
setDefaultTimeout(60_000);

let reg: DockerRegistryHandle;
let dockerd: DockerdHandle;
let client: RegistryClient;
const amd64 = { os: "linux", architecture: "amd64" };

beforeAll(async () => {
  [reg, dockerd] = await Promise.all([startDockerRegistry(), startDockerd()]);
  client = new RegistryClient({ registry: reg.host, scheme: "http" });
}, 90_000);
afterAll(async () => {
  await reg?.stop();
  await dockerd?.stop();
});

/** POST /images/load through the engine API, the way fioup loads images. */
async function engineLoad(body: ReadableStream<Uint8Array>): Promise<string> {
  const res = await fetch("http://docker/images/load", { method: "POST", body, unix: dockerd.socket, headers: { "content-type": "application/x-tar" } });
  const text = await res.text();
  if (!res.ok || text.includes('"error"')) throw new Error(`docker load failed: ${res.status} ${text}`);
  return text;
}

describe("docker-save archives", () => {
  test("publish path: docker-save tar → registry → store → docker load keeps the image ID and runs", async () => {
    const opts = { files: { "/hello.txt": "hello from lib/oci\n" }, layers: [{ "/second.txt": "layer two\n" }], cmd: ["cat", "/hello.txt"], tag: "src/app:build" };
    const built = await buildBusyboxImage(opts);
    const tar = await busyboxImageTar(opts);

    const pushed = await pushDockerArchive(client, "main/app", "abc123", tar);
    expect(pushed.configDigest).toBe(built.configDigest);
    expect(pushed.manifest.layers.map((l) => l.mediaType)).toEqual([MediaType.OciLayerGzip, MediaType.OciLayerGzip]);
    // same input, same gzip output: a re-push uploads nothing
    const again = await pushDockerArchive(client, "main/app", "abc123", tar);
    expect(again.digest).toBe(pushed.digest);
    expect(again.uploadedBytes).toBe(0);

    const store = new BlobStore(await tempDir("oci-device-"));
    const img = await pullImage(client, "main/app", pushed.digest, store, { platform: amd64 });
    const tag = `main/app:fioup-${img.manifestDigest.slice(7, 39)}`;
    const out = await engineLoad(await dockerArchiveStream(store, [{ manifestDigest: img.manifestDigest, repoTags: [tag] }]));
    expect(out).toContain(tag);
    const inspect = JSON.parse(await dockerd.docker("image", "inspect", tag));
    expect(inspect[0].Id).toBe(built.configDigest);
    expect(inspect[0].RepoTags).toContain(tag);
    // both layers made it: one file from each
    expect(await dockerd.docker("run", "--rm", "--network", "none", tag, "cat", "/hello.txt", "/second.txt")).toBe("hello from lib/oci\nlayer two\n");

    // and what docker 28's own `docker save` writes (OCI layout + manifest.json) pushes back
    const saved = join(await tempDir("oci-saved-"), "saved.tar");
    await dockerd.docker("save", "-o", saved, tag);
    const resaved = await pushDockerArchive(client, "main/resaved", "1", saved);
    expect(resaved.configDigest).toBe(built.configDigest);
    expect(resaved.manifest.layers.length).toBe(2);
    await dockerd.docker("rmi", "-f", tag);
  }, 60_000);

  test("uncompressed push (compress: none) and a gzipped docker save both work, and docker load accepts plain layers", async () => {
    const opts = { files: { "/plain.txt": "plain\n" }, tag: "src/plain:1" };
    const built = await buildBusyboxImage(opts);
    const tar = await busyboxImageTar(opts);
    const plain = await pushDockerArchive(client, "main/plain", "1", tar, { compress: "none" });
    expect(plain.manifest.layers[0]!.mediaType).toBe(MediaType.OciLayer);
    expect(plain.manifest.layers[0]!.digest).toBe(built.layers[0]!.diffId);

    const gzPath = join(await tempDir("oci-gz-"), "image.tar.gz");
    await writeFile(gzPath, Bun.gzipSync(new Uint8Array(await Bun.file(tar).arrayBuffer())));
    const fromGz = await pushDockerArchive(client, "main/plain", "2", gzPath, { repoTag: "src/plain:1" });
    expect(fromGz.configDigest).toBe(built.configDigest);

    const store = new BlobStore(await tempDir("oci-device-"));
    const img = await pullImage(client, "main/plain", "1", store, { platform: amd64 });
    await engineLoad(await dockerArchiveStream(store, [{ manifestDigest: img.manifestDigest, repoTags: ["main/plain:loaded"] }]));
    expect(JSON.parse(await dockerd.docker("image", "inspect", "main/plain:loaded"))[0].Id).toBe(built.configDigest);
    await dockerd.docker("rmi", "-f", "main/plain:loaded");
  }, 60_000);

  test("bad input is refused with a clear error", async () => {
    const tar = await busyboxImageTar({ tag: "src/x:1" });
    await expect(pushDockerArchive(client, "main/x", "1", tar, { repoTag: "src/other:1" })).rejects.toThrow(DockerArchiveError);
    const notTar = join(await tempDir("oci-bad-"), "x.tar");
    await writeFile(notTar, new Uint8Array(2048));
    await expect(pushDockerArchive(client, "main/x", "1", notTar)).rejects.toThrow(/no manifest.json/);
    const store = new BlobStore(await tempDir("oci-empty-"));
    const built = await buildBusyboxImage({});
    await store.writeBytes(built.manifest);
    await expect(dockerArchiveStream(store, [{ manifestDigest: built.manifestDigest, repoTags: ["a:b"] }])).rejects.toThrow(/not in the store/);
    await store.writeBytes(built.config);
    for (const l of built.layers) await store.writeBytes(l.gz);
    await expect(dockerArchiveStream(store, [{ manifestDigest: built.manifestDigest, repoTags: ["no-tag"] }])).rejects.toThrow(SyntaxError);
  });
});
