/**
 * HTTP `Range` parsing for blob GETs: one `bytes=` range in any of its three forms
 * (`a-b`, `a-`, `-n`). Multi-range requests are answered with the whole blob (allowed by
 * RFC 9110), so we never build multipart bodies.
 *
 * @module
 */
import { RegistryRequestError } from "./errors.ts";

/** An inclusive byte range within a blob. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Resolves a `Range` header against a blob of `size` bytes.
 *
 * @example
 * ```ts
 * parseRange("bytes=500-1499", 2000); // { start: 500, end: 1499 }
 * parseRange("bytes=-500", 2000);     // { start: 1500, end: 1999 }
 * ```
 * @returns the range, or `undefined` when the header is absent or not a single byte range
 *   (the caller then serves the whole blob).
 * @throws {RegistryRequestError} 416 RANGE_INVALID when the range cannot be satisfied.
 */
export function parseRange(header: string | undefined | null, size: number): ByteRange | undefined {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header);
  if (!m) return undefined;
  const [, a = "", b = ""] = m;
  if (a === "" && b === "") return undefined;
  const unsatisfiable = () =>
    new RegistryRequestError(416, "RANGE_INVALID", `Range "${header}" is not satisfiable: the blob has ${size} bytes`, undefined, {
      "Content-Range": `bytes */${size}`,
    });
  if (a === "") {
    const n = Number(b);
    if (n === 0 || size === 0) throw unsatisfiable();
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  const end = b === "" ? size - 1 : Math.min(Number(b), size - 1);
  if (b !== "" && Number(b) < start) return undefined; // syntactically invalid: ignore
  if (start >= size) throw unsatisfiable();
  return { start, end };
}

/**
 * Parses an upload chunk's `Content-Range` (`<start>-<end>`, optionally prefixed `bytes `),
 * as sent with PATCH by OCI clients.
 *
 * @throws {RegistryRequestError} 416 if the header is malformed.
 */
export function parseUploadRange(header: string | undefined | null): ByteRange | undefined {
  if (!header) return undefined;
  const m = /^\s*(?:bytes[ =])?\s*(\d+)-(\d+)(?:\/(?:\d+|\*))?\s*$/.exec(header);
  if (!m) throw new RegistryRequestError(416, "BLOB_UPLOAD_INVALID", `Invalid Content-Range "${header}": expected <start>-<end>`);
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) throw new RegistryRequestError(416, "BLOB_UPLOAD_INVALID", `Invalid Content-Range "${header}": end before start`);
  return { start, end };
}
