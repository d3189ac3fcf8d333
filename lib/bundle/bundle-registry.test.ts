import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeviceBlobStore } from "../device/store.ts";
import { DELTA_MEDIA_TYPE } from "../oci/delta.ts";
import { digestBytes, DigestMismatchError } from "../oci/digest.ts";
import { RegistryError } from "../oci/registry-client.ts";
import { bundleMetadataFetch, BUNDLE_METADATA_BASE_URL } from "./bundle-metadata.ts";
import { BundleRegistry } from "./bundle-registry.ts";
import type { Bundle } from "./format.ts";

const root = mkdtempSync(join(tmpdir(), "bundle-registry-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const layer = new TextEncoder().encode("0123456789abcdef");
const manifest = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json" }));
const put = (dir: string, bytes: Uint8Array) => writeFileSync(join(dir, "blobs/sha256", digestBytes(bytes).slice(7)), bytes);

function bundle(name: string): Bundle {
  const dir = join(root, name);
  mkdirSync(join(dir, "blobs/sha256"), { recursive: true });
  mkdirSync(join(dir, "tuf"), { recursive: true });
  put(dir, layer);
  put(dir, manifest);
  writeFileSync(join(dir, "tuf/timestamp.json"), '{"signed":{}}');
  const blobs = [
    { digest: digestBytes(layer), size: layer.byteLength, kind: "layer" as const, mediaType: "application/octet-stream", registry: "gw", repo: "main/app" },
    { digest: digestBytes(manifest), size: manifest.byteLength, kind: "manifest" as const, mediaType: "application/vnd.oci.image.manifest.v1+json", registry: "gw", repo: "main/app" },
  ];
  return {
    dir,
    id: "x",
    index: {
      schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [],
      bundle: { format: 1, target: "t-1", version: "1", hwid: "h", platform: "linux/amd64", from: "0", createdAt: "", tuf: ["timestamp.json"], blobs, bytes: 0 },
    },
  };
}

describe("BundleRegistry", () => {
  const b = bundle("one");
  const reg = new BundleRegistry(b, "gw:8443");

  test("serves manifests by digest, verified by the real client", async () => {
    const m = await reg.getManifest("main/app", digestBytes(manifest));
    expect(m.bytes).toEqual(manifest);
    expect(m.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
  });

  test("answers Range requests with 206 and the slice", async () => {
    const res = await reg.fetchBlob("main/app", digestBytes(layer), { start: 4, end: 7 });
    expect(res.status).toBe(206);
    expect(res.headers.get("content-range")).toBe(`bytes 4-7/${layer.byteLength}`);
    expect(await res.text()).toBe("4567");
  });

  test("a blob it lacks is a 404 naming the --from version; tags and deltas are not there", async () => {
    const err = await reg.fetchBlob("main/app", `sha256:${"1".repeat(64)}`).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err.status).toBe(404);
    expect(err.message).toContain("version 0");
    // The bundle's words, not a registry's status line naming a host no one asked.
    expect(err.message).toStartWith(`Cannot fetch blob sha256:${"1".repeat(64)} from main/app: The offline bundle `);
    expect(err.code).toBe("BLOB_UNKNOWN");
    expect((await reg.getManifest("main/app", "latest").catch((e) => e)).status).toBe(404);
    expect((await reg.request("GET", "/v2/main/app/deltas/x", { scopes: [] })).status).toBe(404);
  });

  test("a tampered blob never reaches the device store", async () => {
    const t = bundle("tampered");
    const d = digestBytes(layer);
    writeFileSync(join(t.dir, "blobs/sha256", d.slice(7)), new TextEncoder().encode("0123456789abcdeX"));
    const store = new DeviceBlobStore(join(root, "store"));
    const err = await store.pull(new BundleRegistry(t, "gw"), "main/app", { digest: d, size: layer.byteLength }, { stallTimeoutMs: 2000 }).catch((e) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect(store.has(d)).toBe(false);
    await store.pull(reg, "main/app", { digest: d, size: layer.byteLength });
    expect(store.has(d)).toBe(true);
  });
});

describe("BundleRegistry with layer deltas", () => {
  const delta = new TextEncoder().encode("a zstd frame");
  const from = `sha256:${"a".repeat(64)}`;
  const to = `sha256:${"b".repeat(64)}`;
  const b = bundle("deltas");
  put(b.dir, delta);
  b.index.bundle.format = 2;
  b.index.bundle.deltas = [{ mediaType: DELTA_MEDIA_TYPE, digest: digestBytes(delta), size: delta.byteLength, from, to, fromSize: 100, toSize: 100, windowLog: 27, registry: "gw", repo: "main/app" }];
  const reg = new BundleRegistry(b, "gw");
  const ask = (f: string, t: string) => reg.request("GET", `/v2/main/app/deltas?from=${encodeURIComponent(f)}&to=${encodeURIComponent(t)}`, { scopes: [] });

  test("answers the deltas endpoint with the descriptor for the pair it carries, 404 for any other", async () => {
    const res = await ask(from, to);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ mediaType: DELTA_MEDIA_TYPE, digest: digestBytes(delta), size: delta.byteLength, from, to, fromSize: 100, toSize: 100, windowLog: 27 });
    expect((await ask(`sha256:${"c".repeat(64)}`, to)).status).toBe(404);
    expect((await ask(from, `sha256:${"c".repeat(64)}`)).status).toBe(404);
    expect((await reg.fetchBlob("main/app", digestBytes(delta))).status).toBe(200);
  });

  test("asking for the full layer it carries only as a delta says there is none to fall back to, and why the delta was no use", async () => {
    // Never asked for the delta: fioup asks only when it holds the base, so the device lacks it.
    const fresh = new BundleRegistry(b, "gw");
    const notHeld = await fresh.fetchBlob("main/app", to).catch((e) => e);
    expect(notHeld).toBeInstanceOf(RegistryError);
    expect(notHeld.status).toBe(404);
    expect(notHeld.message).toContain(`carries layer ${to} only as a delta from layer ${from}`);
    expect(notHeld.message).toContain("the device does not hold that layer, neither in its blob store nor in its Docker Engine");
    expect(notHeld.message).toContain("export one with --no-deltas");
    // Asked for the delta, then for the layer: the rebuild failed.
    expect((await fresh.request("GET", `/v2/main/app/deltas?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`, { scopes: [] })).status).toBe(200);
    const notRebuilt = await fresh.fetchBlob("main/app", to).catch((e) => e);
    expect(notRebuilt.status).toBe(404);
    expect(notRebuilt.message).toContain("did not rebuild here from it (the reason is on the line above");
    expect(notRebuilt.message).not.toContain("does not hold");
  });
});

describe("bundleMetadataFetch", () => {
  test("serves tuf/ files by name and 404 for anything else", async () => {
    const f = bundleMetadataFetch(bundle("meta").dir);
    expect(await (await f(`${BUNDLE_METADATA_BASE_URL}timestamp.json`, {})).text()).toBe('{"signed":{}}');
    expect((await f(`${BUNDLE_METADATA_BASE_URL}2.root.json`, {})).status).toBe(404);
    expect((await f(`${BUNDLE_METADATA_BASE_URL}..%2Findex.json`, {})).status).toBe(404);
  });
});
