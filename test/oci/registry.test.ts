import { afterAll, beforeAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { buildBusyboxImage } from "../harness/images.ts";
import { tempDir } from "../harness/tmp.ts";
import {
  BlobStore,
  DigestMismatchError,
  parseManifest,
  pullImage,
  pushImageFromStore,
  RegistryClient,
  RegistryError,
  sha256,
} from "../../lib/oci/index.ts";
import { startCuttingProxy, type CuttingProxy } from "./_proxy.ts";

// bunfig.toml's [test] timeout is not applied by bun 1.4.5: these tests start real services.
setDefaultTimeout(60_000);

let reg: DockerRegistryHandle;
let client: RegistryClient;
let proxy: CuttingProxy;

beforeAll(async () => {
  reg = await startDockerRegistry();
  client = new RegistryClient({ registry: reg.host, scheme: "http" });
  proxy = await startCuttingProxy(Number(reg.host.split(":")[1]));
});
afterAll(async () => {
  await proxy?.close();
  await reg?.stop();
});

const newStore = async () => new BlobStore(await tempDir("oci-store-"));
const randomBytes = (n: number) => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
};

/** Puts an image built by the harness into a store, as if pulled earlier. */
async function imageInStore(store: BlobStore, opts: Parameters<typeof buildBusyboxImage>[0] = {}) {
  const img = await buildBusyboxImage(opts);
  for (const l of img.layers) await store.writeBytes(l.gz);
  await store.writeBytes(img.config);
  await store.writeBytes(img.manifest);
  return img;
}

describe("RegistryClient against docker-registry 2.8", () => {
  test("pushes an image from a store, pulls it into another store byte-identical, and a re-push uploads 0 bytes", async () => {
    const src = await newStore();
    const img = await imageInStore(src, { files: { "/hello.txt": "hi" } });
    const r1 = await pushImageFromStore(client, "t/push", "v1", src, img.manifestDigest);
    expect(r1.digest).toBe(img.manifestDigest);
    expect(r1.uploaded).toBe(2);
    expect(r1.uploadedBytes).toBe(img.config.length + img.layers[0]!.gz.length);

    const head = await client.headManifest("t/push", "v1");
    expect(head?.digest).toBe(img.manifestDigest);
    expect(await client.headManifest("t/push", "nope")).toBeUndefined();

    const dst = await newStore();
    const pulled = await pullImage(client, "t/push", "v1", dst, { platform: { os: "linux", architecture: "amd64" } });
    expect(pulled.manifestDigest).toBe(img.manifestDigest);
    expect(pulled.configDigest).toBe(img.configDigest);
    expect(pulled.fetched).toBe(img.config.length + img.layers[0]!.gz.length);
    expect(await dst.read(img.layers[0]!.digest)).toEqual(img.layers[0]!.gz);
    expect(await dst.read(img.manifestDigest)).toEqual(img.manifest);
    // pulling again downloads nothing
    expect((await pullImage(client, "t/push", "v1", dst, { platform: { os: "linux", architecture: "amd64" } })).fetched).toBe(0);

    const r2 = await pushImageFromStore(client, "t/push", "v2", src, img.manifestDigest);
    expect(r2.uploadedBytes).toBe(0);
    expect(r2.skipped).toBe(2);
  });

  test("chunked upload with PATCH and Content-Range gives the same blob", async () => {
    const dir = await tempDir("oci-chunk-");
    const data = randomBytes(1_000_003);
    const p = join(dir, "blob");
    await writeFile(p, data);
    const progress: number[] = [];
    const r = await client.pushBlob("t/chunked", { path: p }, { chunkSize: 256 * 1024, onProgress: (n) => progress.push(n) });
    expect(r).toEqual({ digest: sha256(data), size: data.length });
    expect(progress).toEqual([262144, 524288, 786432, 1_000_003]);
    expect(await client.blobExists("t/chunked", r.digest)).toBe(data.length);
    const back = new Uint8Array(await (await client.fetchBlob("t/chunked", r.digest)).arrayBuffer());
    expect(sha256(back)).toBe(r.digest);
  });

  test("a monolithic upload with a digest that does not match is refused with DIGEST_INVALID", async () => {
    const err = await client.pushBlob("t/bad", new Uint8Array([1, 2, 3]), { digest: sha256("other"), size: 3 }).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).code).toBe("DIGEST_INVALID");
    expect(await client.blobExists("t/bad", sha256("other"))).toBeUndefined();
  });

  test("mounts a blob from another repository instead of uploading it", async () => {
    const data = randomBytes(50_000);
    const { digest } = await client.pushBlob("t/mount-src", data);
    expect(await client.blobExists("t/mount-dst", digest)).toBeUndefined();
    expect(await client.mountBlob("t/mount-dst", digest, "t/mount-src")).toBe(true);
    expect(await client.blobExists("t/mount-dst", digest)).toBe(data.length);
    expect(await client.mountBlob("t/mount-dst2", sha256("absent"), "t/mount-src")).toBe(false);

    const src = await newStore();
    const img = await imageInStore(src, { files: { "/m": "mount" } });
    await pushImageFromStore(client, "t/base", "1", src, img.manifestDigest);
    const r = await pushImageFromStore(client, "t/derived", "1", src, img.manifestDigest, { mountFrom: ["t/base"] });
    expect(r.mounted).toBe(2);
    expect(r.uploadedBytes).toBe(0);
  });

  test("listTags returns every tag (distribution 2.8 ignores n, so one page)", async () => {
    const src = await newStore();
    const img = await imageInStore(src, { files: { "/t": "tags" } });
    const tags = ["a", "b", "c", "d", "e"];
    for (const t of tags) await pushImageFromStore(client, "t/tags", t, src, img.manifestDigest);
    // distribution 2.8 pages in storage order, not sorted: compare as sets
    expect((await client.listTags("t/tags", { pageSize: 2 })).sort()).toEqual(tags);
    const err = await client.listTags("t/none").catch((e) => e);
    expect((err as RegistryError).status).toBe(404);
    expect((err as RegistryError).code).toBe("NAME_UNKNOWN");
  });

  test("getManifest by digest returns exact bytes; a missing one is MANIFEST_UNKNOWN", async () => {
    const src = await newStore();
    const img = await imageInStore(src, { files: { "/g": "get" } });
    await pushImageFromStore(client, "t/get", "x", src, img.manifestDigest);
    const m = await client.getManifest("t/get", img.manifestDigest);
    expect(m.bytes).toEqual(img.manifest);
    expect(parseManifest(m.bytes, m.mediaType).kind).toBe("manifest");
    const err = await client.getManifest("t/get", "missing").catch((e) => e);
    expect((err as RegistryError).code).toBe("MANIFEST_UNKNOWN");
  });
});

describe("BlobStore.pull against docker-registry 2.8", () => {
  test("an interrupted download resumes with Range and fetches only the unfinished part", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const { digest, size } = await client.pushBlob("t/resume", data);
    const viaProxy = new RegistryClient({ registry: `127.0.0.1:${proxy.port}`, scheme: "http" });
    const store = await newStore();

    proxy.cutAfter(1024 * 1024);
    const err = await store.pull(viaProxy, "t/resume", { digest, size }, { retries: 0 }).catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(proxy.cut).toBe(true);
    expect(await store.has(digest)).toBe(false);
    // Some of the 1 MiB the proxy forwarded before the cut: what the client's socket still held
    // when the cut's reset came is lost (a loaded machine lost 600 KiB of it), so only "some".
    const partial = (await stat(store.partialPath(digest))).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(size);

    const r = await store.pull(viaProxy, "t/resume", { digest, size });
    expect(r.fetched).toBe(size - partial);
    expect(await store.read(digest)).toEqual(data);
    expect(await readdir(store.ingestDir)).toEqual([]);
  });

  test("with retries, a cut connection is resumed within the same call", async () => {
    const data = randomBytes(2 * 1024 * 1024);
    const { digest, size } = await client.pushBlob("t/resume2", data);
    const viaProxy = new RegistryClient({ registry: `127.0.0.1:${proxy.port}`, scheme: "http" });
    const store = await newStore();
    proxy.cutAfter(700 * 1024);
    const r = await store.pull(viaProxy, "t/resume2", { digest, size });
    expect(proxy.cut).toBe(true);
    expect(r.fetched).toBe(size); // every byte fetched once: the retry did not start over
    expect(sha256(await store.read(digest))).toBe(digest);
  });

  test("a blob whose bytes do not match its digest is rejected and never committed", async () => {
    const data = randomBytes(200_000);
    const { digest, size } = await client.pushBlob("t/corrupt", data);
    // corrupt the registry's stored copy: same size, different bytes
    const hex = digest.slice(7);
    const onDisk = join(reg.dir, "data", "docker", "registry", "v2", "blobs", "sha256", hex.slice(0, 2), hex, "data");
    const bad = data.slice();
    bad[1000] = bad[1000]! ^ 0xff;
    await writeFile(onDisk, bad);
    const store = await newStore();
    const err = await store.pull(client, "t/corrupt", { digest, size }).catch((e) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect(await store.has(digest)).toBe(false);
    expect(await store.list()).toEqual([]);
    expect(await Bun.file(store.partialPath(digest)).exists()).toBe(false);
  });

  test("a registry sending more bytes than the descriptor says is refused", async () => {
    const data = randomBytes(10_000);
    const { digest } = await client.pushBlob("t/large", data);
    const store = await newStore();
    const err = await store.pull(client, "t/large", { digest, size: 5_000 }).catch((e) => e);
    expect((err as Error).name).toBe("BlobTooLargeError");
    expect(await store.has(digest)).toBe(false);
  });

  test("a missing blob is a RegistryError with BLOB_UNKNOWN", async () => {
    const store = await newStore();
    const err = await store.pull(client, "t/resume", { digest: sha256("missing"), size: 7 }).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).status).toBe(404);
  });
});
