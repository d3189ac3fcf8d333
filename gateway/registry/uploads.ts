/**
 * Blob upload sessions on disk, so a push survives a gateway restart: each session is a
 * directory holding `info.json` and the bytes received so far. Bytes are hashed as they
 * stream in (flat memory for any size); after a restart the hash is rebuilt from the file.
 * A finished upload becomes visible only once its digest checks out, by renaming the file
 * into the content store and then linking it into the repository.
 *
 * @module
 */
import { mkdir, open, rm, stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import { RegistryRequestError } from "./errors.ts";
import { checkDigest } from "./_names.ts";
import { writeFileAtomic } from "../../lib/fs/atomic-write.ts";
import { hashFile, isNotFound, readTextOrUndefined } from "./_fs.ts";
import type { ByteRange } from "./range.ts";
import type { RegistryStorage } from "./storage.ts";

interface UploadInfo {
  repository: string;
  startedAt: string;
}

const ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class UploadSessions {
  /** Running sha256 per session, valid while `offset` equals the file size. */
  private readonly hashers = new Map<string, { hasher: Bun.CryptoHasher; offset: number }>();
  /** One request at a time per session. */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly store: RegistryStorage) {}

  get dir(): string {
    return this.store.uploadsDir;
  }
  private sessionDir(id: string): string {
    return join(this.dir, id);
  }
  private dataFile(id: string): string {
    return join(this.sessionDir(id), "data");
  }

  private async serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.locks.set(id, settled);
    try {
      return await next;
    } finally {
      if (this.locks.get(id) === settled) this.locks.delete(id);
    }
  }

  /** Starts a session for `repo`; returns its id. */
  async start(repo: string): Promise<string> {
    const id = crypto.randomUUID();
    await mkdir(this.sessionDir(id), { recursive: true });
    await Bun.write(this.dataFile(id), "");
    const info: UploadInfo = { repository: repo, startedAt: new Date().toISOString() };
    await writeFileAtomic(join(this.sessionDir(id), "info.json"), JSON.stringify(info));
    this.hashers.set(id, { hasher: new Bun.CryptoHasher("sha256"), offset: 0 });
    return id;
  }

  /**
   * Bytes received so far by a session of `repo`.
   *
   * @throws {RegistryRequestError} 404 BLOB_UPLOAD_UNKNOWN for an unknown session or another repository's.
   */
  async size(repo: string, id: string): Promise<number> {
    const unknown = () => new RegistryRequestError(404, "BLOB_UPLOAD_UNKNOWN", `Upload "${id.slice(0, 100)}" not found in repository "${repo}"`);
    if (!ID_RE.test(id)) throw unknown();
    const text = await readTextOrUndefined(join(this.sessionDir(id), "info.json"));
    if (text === undefined) throw unknown();
    const info = JSON.parse(text) as UploadInfo;
    if (info.repository !== repo) throw unknown();
    try {
      return (await stat(this.dataFile(id))).size;
    } catch (err) {
      if (isNotFound(err)) throw unknown();
      throw err;
    }
  }

  /**
   * Appends a request body to a session. With `range` (a PATCH's Content-Range) the chunk must
   * start where the session ends (else 416 with the current Range) and have exactly the
   * announced length; a failed or short chunk is rolled back, so the session loses nothing.
   *
   * @returns the new size.
   */
  async append(repo: string, id: string, body: ReadableStream<Uint8Array> | null, range?: ByteRange, contentLength?: number): Promise<number> {
    return await this.serial(id, async () => {
      const size = await this.size(repo, id);
      if (range && range.start !== size) {
        throw new RegistryRequestError(416, "BLOB_UPLOAD_INVALID", `Chunk refused: it starts at byte ${range.start} but the upload has ${size} bytes`, undefined, rangeHeaders(size));
      }
      const expected = range ? range.end - range.start + 1 : contentLength;
      if (range && contentLength !== undefined && contentLength !== expected) {
        throw new RegistryRequestError(400, "BLOB_UPLOAD_INVALID", `Chunk refused: Content-Range announces ${expected} bytes but Content-Length is ${contentLength}`);
      }
      return await this.write(id, size, body, expected);
    });
  }

  private async write(id: string, size: number, body: ReadableStream<Uint8Array> | null, expected: number | undefined): Promise<number> {
    let state = this.hashers.get(id);
    if (state && state.offset !== size) state = undefined;
    const hasher = state ? state.hasher.copy() : undefined;
    const fh = await open(this.dataFile(id), "a");
    let written = 0;
    try {
      if (body) {
        for await (const chunk of body) {
          await fh.write(chunk);
          hasher?.update(chunk);
          written += chunk.byteLength;
        }
      }
      if (expected !== undefined && written !== expected) {
        throw new RegistryRequestError(400, "BLOB_UPLOAD_INVALID", `Chunk refused: expected ${expected} bytes, received ${written}`);
      }
    } catch (err) {
      await fh.close();
      await truncate(this.dataFile(id), size);
      throw err;
    }
    await fh.close();
    if (hasher) this.hashers.set(id, { hasher, offset: size + written });
    else this.hashers.delete(id);
    return size + written;
  }

  /**
   * Completes a session: appends the optional last chunk, checks the digest, moves the bytes
   * into the content store and links the blob into `repo`. On a digest mismatch the session is
   * removed and nothing becomes visible.
   */
  async finish(repo: string, id: string, digest: string, body: ReadableStream<Uint8Array> | null, contentLength?: number): Promise<{ digest: string; size: number }> {
    const hex = checkDigest(digest);
    return await this.serial(id, async () => {
      let size = await this.size(repo, id);
      if (body) size = await this.write(id, size, body, contentLength);
      const state = this.hashers.get(id);
      const actual = state && state.offset === size ? state.hasher.digest("hex") : (await hashFile(this.dataFile(id))).hex;
      if (actual !== hex) {
        await this.remove(id);
        throw new RegistryRequestError(400, "DIGEST_INVALID", `Upload refused: its content has digest sha256:${actual}, not ${digest}`, { expected: digest, actual: `sha256:${actual}` });
      }
      await this.store.commitBlobFile(this.dataFile(id), digest);
      await this.store.linkBlob(repo, digest);
      await this.remove(id);
      return { digest, size };
    });
  }

  /** Cancels a session (404 if unknown). */
  async cancel(repo: string, id: string): Promise<void> {
    await this.size(repo, id);
    await this.remove(id);
  }

  private async remove(id: string): Promise<void> {
    this.hashers.delete(id);
    await rm(this.sessionDir(id), { recursive: true, force: true });
  }
}

/** The `Range` header of an upload status: `0-<last byte>` (`0-0` when empty, as distribution does). */
export function rangeHeaders(size: number): Record<string, string> {
  return { Range: `0-${Math.max(0, size - 1)}` };
}
