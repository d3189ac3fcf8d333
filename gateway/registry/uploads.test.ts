import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RegistryRequestError } from "./errors.ts";
import { RegistryStorage } from "./storage.ts";
import { UploadSessions } from "./uploads.ts";

const stream = (...parts: (Uint8Array | Error)[]) =>
  new ReadableStream<Uint8Array>({
    start(ctl) {
      for (const p of parts) {
        if (p instanceof Error) return ctl.error(p);
        ctl.enqueue(p);
      }
      ctl.close();
    },
  });
const sha256 = (b: Uint8Array) => `sha256:${new Bun.CryptoHasher("sha256").update(b).digest("hex")}`;

async function withSessions(fn: (u: UploadSessions, store: RegistryStorage) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "registry-uploads-"));
  try {
    const store = new RegistryStorage(root);
    await fn(new UploadSessions(store), store);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

describe("UploadSessions", () => {
  test("a chunk that fails mid-stream is rolled back and the upload can go on", async () => {
    await withSessions(async (u, store) => {
      const id = await u.start("r");
      const a = new Uint8Array(100).fill(1);
      const b = new Uint8Array(50).fill(2);
      await u.append("r", id, stream(a));
      await expect(u.append("r", id, stream(b, new Error("client went away")))).rejects.toThrow("client went away");
      expect(await u.size("r", id)).toBe(100);
      await u.append("r", id, stream(b), { start: 100, end: 149 });
      const all = new Uint8Array([...a, ...b]);
      expect(await u.finish("r", id, sha256(all), null)).toEqual({ digest: sha256(all), size: 150 });
      expect(await store.blobSize("r", sha256(all))).toBe(150);
    });
  });

  test("a chunk shorter than its Content-Range is refused and leaves the session as it was", async () => {
    await withSessions(async (u) => {
      const id = await u.start("r");
      const err = await u.append("r", id, stream(new Uint8Array(10)), { start: 0, end: 99 }).catch((e) => e);
      expect(err).toBeInstanceOf(RegistryRequestError);
      expect((err as RegistryRequestError).code).toBe("BLOB_UPLOAD_INVALID");
      expect(await u.size("r", id)).toBe(0);
    });
  });

  test("a session belongs to its repository", async () => {
    await withSessions(async (u) => {
      const id = await u.start("r");
      await expect(u.size("other", id)).rejects.toThrow(RegistryRequestError);
      await expect(u.size("r", "../../etc")).rejects.toThrow(RegistryRequestError);
    });
  });

  test("finishing after a restart re-hashes the bytes on disk", async () => {
    await withSessions(async (u, store) => {
      const id = await u.start("r");
      const data = new Uint8Array(1000).map((_, i) => i % 256);
      await u.append("r", id, stream(data));
      const fresh = new UploadSessions(store); // no in-memory hash state
      await expect(fresh.finish("r", id, sha256(new Uint8Array(3)), null)).rejects.toThrow(/digest/);
      expect(existsSync(join(fresh.dir, id))).toBe(false);
      const id2 = await fresh.start("r");
      await fresh.append("r", id2, stream(data));
      expect((await new UploadSessions(store).finish("r", id2, sha256(data), null)).size).toBe(1000);
    });
  });
});
