import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { gzipSync } from "node:zlib";
import { DigestMismatchError, sha256 } from "../oci/digest.ts";
import { DeviceBlobStore } from "./store.ts";

const root = mkdtempSync(join(tmpdir(), "device-store-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("DeviceBlobStore rebuilt layers", () => {
  const tar = new TextEncoder().encode("a layer tar ".repeat(1000));
  const layer = sha256(gzipSync(tar)); // the registry digest of the compressed layer
  const diffId = sha256(tar);

  test("a rebuilt layer stands for its registry digest, and prune keeps it only with that digest", async () => {
    const store = new DeviceBlobStore(join(root, "a"));
    expect(store.has(layer)).toBe(false);
    const tmp = store.rebuildPath(layer);
    mkdirSync(dirname(tmp), { recursive: true });
    writeFileSync(tmp, tar);
    await store.putRebuiltLayer(layer, tmp, diffId);
    expect(store.has(layer)).toBe(true);
    expect(store.holder(layer)).toBe(diffId);
    expect(await store.read(layer)).toEqual(tar);
    store.prune(new Set([layer]));
    expect(store.has(layer)).toBe(true);
    store.prune(new Set());
    expect(store.has(layer)).toBe(false);
    expect(store.has(diffId)).toBe(false);
  });

  test("refuses a rebuilt file that does not hash to the diff_id", async () => {
    const store = new DeviceBlobStore(join(root, "b"));
    const tmp = store.rebuildPath(layer);
    mkdirSync(dirname(tmp), { recursive: true });
    writeFileSync(tmp, new TextEncoder().encode("other bytes"));
    await expect(store.putRebuiltLayer(layer, tmp, diffId)).rejects.toThrow(DigestMismatchError);
    expect(store.has(layer)).toBe(false);
  });
});
