import { describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BlobNotFoundError, BlobSizeMismatchError, BlobStore } from "./blob-store.ts";
import { DigestMismatchError, sha256 } from "./digest.ts";

const newStore = async () => new BlobStore(await mkdtemp(join(tmpdir(), "blobstore-")));

describe("BlobStore", () => {
  test("writeBytes stores content under blobs/sha256/<hex> and reads it back", async () => {
    const store = await newStore();
    const data = new TextEncoder().encode("hello");
    const digest = await store.writeBytes(data);
    expect(digest).toBe(sha256(data));
    expect(store.path(digest)).toBe(join(store.root, "blobs", "sha256", digest.slice(7)));
    expect(await store.has(digest)).toBe(true);
    expect(await store.size(digest)).toBe(5);
    expect(new TextDecoder().decode(await store.read(digest))).toBe("hello");
    expect(await store.list()).toEqual([digest]);
    expect(await store.writeBytes(data)).toBe(digest); // idempotent
  });

  test("writeBytes with a wrong expected digest stores nothing", async () => {
    const store = await newStore();
    await expect(store.writeBytes(new Uint8Array([1]), sha256("other"))).rejects.toThrow(DigestMismatchError);
    expect(await store.list()).toEqual([]);
  });

  test("commit verifies digest and size, deleting a bad file and never committing it", async () => {
    const store = await newStore();
    await mkdir(store.ingestDir, { recursive: true });
    const tmp = join(store.ingestDir, "x.tmp");
    await writeFile(tmp, "good");
    await expect(store.commit(tmp, sha256("good"), 5)).rejects.toThrow(BlobSizeMismatchError);
    expect(await Bun.file(tmp).exists()).toBe(false);
    await writeFile(tmp, "evil");
    await expect(store.commit(tmp, sha256("good"))).rejects.toThrow(DigestMismatchError);
    expect(await store.has(sha256("good"))).toBe(false);
    expect(await Bun.file(tmp).exists()).toBe(false);
    await writeFile(tmp, "good");
    await store.commit(tmp, sha256("good"), 4);
    expect(await store.has(sha256("good"))).toBe(true);
    expect(await readdir(store.ingestDir)).toEqual([]);
  });

  test("read of a missing blob throws BlobNotFoundError; remove deletes", async () => {
    const store = await newStore();
    await expect(store.read(sha256("nope"))).rejects.toThrow(BlobNotFoundError);
    const d = await store.writeBytes(new Uint8Array([1, 2, 3]));
    await store.remove(d);
    expect(await store.has(d)).toBe(false);
    expect(() => store.path("sha256:bad")).toThrow(SyntaxError);
  });

  test("list ignores stray files", async () => {
    const store = await newStore();
    await mkdir(join(store.root, "blobs", "sha256"), { recursive: true });
    await writeFile(join(store.root, "blobs", "sha256", "junk"), "x");
    const d = await store.writeBytes(new Uint8Array([9]));
    expect(await store.list()).toEqual([d]);
  });
});
