/**
 * Building signed TUF metadata files with `@tufjs/models`: the bytes that are
 * served (compact JSON, hashed by the role above), the `MetaFile` entry that
 * pins them (version + length + sha256, so a client cannot be fed a mixed set),
 * and TUF's expiry format.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { MetaFile, Metadata, type Root, type Snapshot, type Targets, type Timestamp } from "@tufjs/models";
import { canonicalBytes } from "./canonical-json.ts";
import { signerFor, type TufKeyPair } from "./keys.ts";

/** The top-level TUF roles, listed once: the repository, the ceremony, the expiries and the CLI name them from here. */
export const ROLE_NAMES = ["root", "targets", "snapshot", "timestamp"] as const;
export type RoleName = (typeof ROLE_NAMES)[number];
/** Any top-level role's signed part. */
export type Signed = Root | Targets | Snapshot | Timestamp;
export type SignedOf<R extends RoleName> = R extends "root" ? Root : R extends "targets" ? Targets : R extends "snapshot" ? Snapshot : Timestamp;

/** TUF's expiry string (`2030-01-01T00:00:00Z`: ISO 8601 without fractions) for `now + seconds`. */
export const expiresAt = (now: Date, seconds: number): string =>
  new Date(Math.floor(now.getTime() / 1000) * 1000 + seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");

/**
 * Signs `signed` with every key given (e.g. old and new root keys) and returns the file bytes.
 *
 * @example
 * ```ts
 * const bytes = signMetadata(new Timestamp({ version: 2, expires, snapshotMeta }), [timestampKey]);
 * ```
 */
export function signMetadata<T extends Signed>(signed: T, keys: TufKeyPair[]): Uint8Array {
  const md = new Metadata<T>(signed);
  for (const k of keys) md.sign(signerFor(k));
  return serializeMetadata(md);
}

/**
 * Signs a plain `signed` object (e.g. targets with thousands of entries, where building
 * `@tufjs/models` objects costs hundreds of milliseconds) and returns the file bytes, the same
 * format {@link signMetadata} writes. The caller is responsible for the object's shape.
 *
 * @example
 * ```ts
 * signJson({ _type: "targets", spec_version: "1.0.31", version: 2, expires, targets }, [targetsKey]);
 * ```
 */
export function signJson(signed: Record<string, unknown>, keys: TufKeyPair[]): Uint8Array {
  const bytes = Buffer.from(canonicalBytes(signed));
  const signatures = keys.map((k) => signerFor(k)(bytes).toJSON());
  return new TextEncoder().encode(JSON.stringify({ signatures, signed }));
}

/** The bytes of a metadata file as served (compact JSON of `toJSON()`). */
export const serializeMetadata = (md: Metadata<Signed>): Uint8Array => new TextEncoder().encode(JSON.stringify(md.toJSON()));

/** Parses metadata file bytes into `@tufjs/models` objects (no signature check). */
export function parseMetadata<R extends RoleName>(role: R, bytes: Uint8Array | string): Metadata<SignedOf<R>> {
  const text = typeof bytes === "string" ? bytes : new TextDecoder().decode(bytes);
  let json;
  try {
    json = JSON.parse(text) as never;
  } catch {
    // Not the parser's message: it quotes the text ('Unexpected identifier "hunter2"'), and a file
    // given by mistake (preload --root, a ceremony file) may be a passphrase or a key.
    throw new SyntaxError("not JSON");
  }
  return Metadata.fromJSON(role as never, json) as unknown as Metadata<SignedOf<R>>;
}

/** The snapshot/timestamp entry for a metadata file: version, exact length and sha256. */
export const metaFileFor = (bytes: Uint8Array, version: number): MetaFile =>
  new MetaFile({ version, length: bytes.length, hashes: { sha256: createHash("sha256").update(bytes).digest("hex") } });
