/**
 * Content digests (`sha256:<hex>`): parsing, hashing bytes and files, and a streaming hasher.
 * Everything in lib/oci addresses content by digest, so this is the one place that knows the
 * grammar and the supported algorithms.
 *
 * @module
 */

/** Algorithms this library can compute and verify. */
export type DigestAlgorithm = "sha256" | "sha512";

/** A parsed digest. `value` is the canonical string form (`algorithm:hex`). */
export interface Digest {
  algorithm: DigestAlgorithm;
  hex: string;
  value: string;
}

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

/**
 * Parses an OCI digest such as `sha256:<64 lowercase hex chars>`.
 *
 * @example
 * ```ts
 * parseDigest(`sha256:${"a".repeat(64)}`).algorithm; // "sha256"
 * ```
 * @throws {SyntaxError} If the value is not `sha256:<64 hex>` or `sha512:<128 hex>`.
 */
export function parseDigest(value: string): Digest {
  const d = tryParseDigest(value);
  if (!d) throw new SyntaxError(`Invalid digest "${value.slice(0, 200)}": expected sha256:<64 lowercase hex> or sha512:<128 lowercase hex>`);
  return d;
}

/** Like {@link parseDigest}, but returns `undefined` instead of throwing. */
export function tryParseDigest(value: string): Digest | undefined {
  if (typeof value !== "string") return undefined;
  const i = value.indexOf(":");
  if (i < 0) return undefined;
  const algorithm = value.slice(0, i);
  const hex = value.slice(i + 1);
  if (algorithm !== "sha256" && algorithm !== "sha512") return undefined;
  if (hex.length !== HEX_LENGTH[algorithm] || !/^[0-9a-f]+$/.test(hex)) return undefined;
  return { algorithm, hex, value };
}

/** True if the string is a well-formed, supported digest. */
export function isDigest(value: string): boolean {
  return tryParseDigest(value) !== undefined;
}

/**
 * Returns the `sha256:<hex>` digest of some bytes.
 *
 * @example
 * ```ts
 * sha256(new Uint8Array()); // "sha256:e3b0c442...b855"
 * ```
 */
export function sha256(bytes: Uint8Array | string): string {
  return `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
}

/** Returns the digest of some bytes with the given algorithm (`algorithm:hex`). */
export function digestBytes(bytes: Uint8Array | string, algorithm: DigestAlgorithm = "sha256"): string {
  return `${algorithm}:${new Bun.CryptoHasher(algorithm).update(bytes).digest("hex")}`;
}

/**
 * A streaming hasher that also counts bytes, for verifying downloads without buffering them.
 *
 * @example
 * ```ts
 * const h = new Digester();
 * h.update(new TextEncoder().encode("a"));
 * h.size; // 1
 * h.digest(); // "sha256:ca97..."
 * ```
 */
export class Digester {
  readonly algorithm: DigestAlgorithm;
  private readonly hasher: Bun.CryptoHasher;
  /** Bytes hashed so far. */
  size = 0;

  constructor(algorithm: DigestAlgorithm = "sha256") {
    this.algorithm = algorithm;
    this.hasher = new Bun.CryptoHasher(algorithm);
  }

  update(chunk: Uint8Array): this {
    this.hasher.update(chunk);
    this.size += chunk.byteLength;
    return this;
  }

  /** The digest of everything hashed so far; the hasher can no longer be updated. */
  digest(): string {
    return `${this.algorithm}:${this.hasher.digest("hex")}`;
  }
}

/**
 * Hashes a file (or a byte range of it) by streaming it, with flat memory.
 *
 * @example
 * ```ts
 * const { digest, size } = await digestFile("/tmp/layer.tar");
 * ```
 */
export async function digestFile(
  path: string,
  opts: { algorithm?: DigestAlgorithm; start?: number; end?: number } = {},
): Promise<{ digest: string; size: number }> {
  const h = new Digester(opts.algorithm ?? "sha256");
  let file: Blob = Bun.file(path);
  if (opts.start !== undefined || opts.end !== undefined) file = file.slice(opts.start ?? 0, opts.end);
  for await (const chunk of file.stream()) h.update(chunk);
  return { digest: h.digest(), size: h.size };
}

/** Hashes a Blob (such as a slice of a `Bun.file`) by streaming it. */
export async function digestBlob(blob: Blob, algorithm: DigestAlgorithm = "sha256"): Promise<{ digest: string; size: number }> {
  const h = new Digester(algorithm);
  for await (const chunk of blob.stream()) h.update(chunk);
  return { digest: h.digest(), size: h.size };
}

/**
 * Thrown when content does not hash to the digest it was addressed by.
 */
export class DigestMismatchError extends Error {
  override name = "DigestMismatchError";
  readonly expected: string;
  readonly actual: string;
  constructor(what: string, expected: string, actual: string) {
    super(`${what}: content digest ${actual} does not match expected ${expected}`);
    this.expected = expected;
    this.actual = actual;
  }
}
