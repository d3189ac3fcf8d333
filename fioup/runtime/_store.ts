/**
 * Read access to the content-addressed blob store (`<root>/blobs/sha256/<hex>`,
 * the lib/oci BlobStore layout). The runtime only reads: fioup's fetch step
 * writes and verifies blobs before they land here.
 *
 * @module
 */
import { BlobStore } from "../../lib/oci/blob-store.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { digestBytes, tryParseDigest } from "../../lib/oci/digest.ts";

/** A blob the runtime needs is not in the store (fetch did not bring it, or it was pruned). */
export class BlobNotInStoreError extends Error {
  override name = "BlobNotInStoreError";
  constructor(
    readonly digest: string,
    what: string,
  ) {
    super(`Cannot read ${what} ${digest}: not in the blob store`);
  }
}

/** A small blob (manifest, index) in the store does not hash to its digest. */
export class CorruptBlobError extends Error {
  override name = "CorruptBlobError";
  constructor(digest: string, actual: string) {
    super(`Cannot use blob ${digest}: its content hashes to ${actual}`);
  }
}

/** Path of a blob in the store. @throws {SyntaxError} for a malformed digest. */
export function blobPath(storeRoot: string, digest: string): string {
  return new BlobStore(storeRoot).path(digest);
}

/** Reads a small blob (≤ `maxBytes`), verifying its digest. @throws {BlobNotInStoreError | CorruptBlobError} */
export async function readSmallBlob(storeRoot: string, digest: string, what: string, maxBytes = 4 << 20): Promise<Uint8Array> {
  const file = Bun.file(blobPath(storeRoot, digest));
  if (!(await file.exists())) throw new BlobNotInStoreError(digest, what);
  if (file.size > maxBytes) throw new CorruptBlobError(digest, `${file.size} bytes (more than ${maxBytes})`);
  const bytes = new Uint8Array(await file.arrayBuffer());
  const d = tryParseDigest(digest)!;
  const actual = digestBytes(bytes, d.algorithm);
  if (actual !== digest) throw new CorruptBlobError(digest, actual);
  return bytes;
}

/** Reads and parses a small JSON blob, verified. */
export async function readJsonBlob<T>(storeRoot: string, digest: string, what: string): Promise<T> {
  const bytes = await readSmallBlob(storeRoot, digest, what);
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as T;
  } catch (cause) {
    throw new SyntaxError(`Cannot parse ${what} ${digest}: not JSON`, { cause });
  }
}

/** True when the blob is in the store (a layer also when it is held as its rebuilt uncompressed tar). */
export async function hasBlob(storeRoot: string, digest: string): Promise<boolean> {
  return new DeviceBlobStore(storeRoot).has(digest);
}
