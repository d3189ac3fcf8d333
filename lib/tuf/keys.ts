/**
 * Ed25519 keys for TUF: generation, key ids, the public key object that goes
 * into root.json, signing for `Metadata.sign`, and a JSON key file format.
 * `@tufjs/models` verifies but neither makes keys nor computes key ids, so
 * this is the one place that does.
 *
 * Key file (mode 0600): `{"keytype":"ed25519","scheme":"ed25519","keyid":"<hex>",
 * "keyval":{"public":"<32-byte hex>"},"private":"<PKCS#8 PEM>"}`.
 *
 * @module
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign as cryptoSign, type KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import { Key, Signature } from "@tufjs/models";
import { writeFileAtomic } from "../fs/atomic-write.ts";
import { fsWhy } from "../fs/why.ts";
import { canonicalJson } from "./canonical-json.ts";

/** The public key object as TUF root.json lists it (without the key id). */
export interface TufPublicKey {
  keytype: "ed25519";
  scheme: "ed25519";
  keyval: { public: string };
}

/** An ed25519 signing key with its TUF identity. */
export interface TufKeyPair {
  keyId: string;
  publicKey: TufPublicKey;
  privateKey: KeyObject;
}

/** Thrown when a key file cannot be read or does not hold a valid ed25519 key. */
export class KeyFileError extends Error {
  override name = "KeyFileError";
  /** The errno code when the file could not be read at all ("ENOENT": there is none). */
  readonly code: string | undefined;
  constructor(path: string, why: string, options?: ErrorOptions & { code?: string }) {
    super(`Cannot load TUF key "${path}": ${why}`, options);
    this.code = options?.code;
  }
}

/**
 * The TUF key id: hex sha256 of the canonical JSON of the public key object.
 *
 * @example
 * ```ts
 * keyIdOf(generateKey().publicKey).length; // 64
 * ```
 */
export const keyIdOf = (publicKey: TufPublicKey): string =>
  createHash("sha256").update(canonicalJson(publicKey)).digest("hex");

function rawPublicHex(key: KeyObject): string {
  const der = createPublicKey(key).export({ format: "der", type: "spki" });
  return der.subarray(der.length - 32).toString("hex"); // ed25519 SPKI ends with the 32 raw bytes
}

function pairFromPrivate(privateKey: KeyObject): TufKeyPair {
  if (privateKey.asymmetricKeyType !== "ed25519") throw new TypeError(`Expected an ed25519 key, got ${privateKey.asymmetricKeyType}`);
  const publicKey: TufPublicKey = { keytype: "ed25519", scheme: "ed25519", keyval: { public: rawPublicHex(privateKey) } };
  return { keyId: keyIdOf(publicKey), publicKey, privateKey };
}

/**
 * Generates a new ed25519 key pair.
 *
 * @example
 * ```ts
 * const k = generateKey(); // k.keyId, k.publicKey (for root.json), k.privateKey
 * ```
 */
export function generateKey(): TufKeyPair {
  return pairFromPrivate(generateKeyPairSync("ed25519").privateKey);
}

/** The `@tufjs/models` `Key` for a public key, to add to a `Root`. */
export const modelKey = (pair: Pick<TufKeyPair, "keyId" | "publicKey">): Key =>
  new Key({ keyID: pair.keyId, keyType: pair.publicKey.keytype, scheme: pair.publicKey.scheme, keyVal: { ...pair.publicKey.keyval } });

/**
 * A signer for `Metadata.sign` (`md.sign(signerFor(key))`): signs the canonical bytes with ed25519.
 *
 * @example
 * ```ts
 * const md = new Metadata(new Timestamp({ expires })); md.sign(signerFor(key));
 * ```
 */
export const signerFor = (pair: TufKeyPair) => (bytes: Buffer): Signature =>
  new Signature({ keyID: pair.keyId, sig: cryptoSign(null, bytes, pair.privateKey).toString("hex") });

/** The key file JSON text for a key pair (holds the private key: keep it 0600). */
export function serializeKey(pair: TufKeyPair): string {
  const pem = pair.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  return `${JSON.stringify({ ...pair.publicKey, keyid: pair.keyId, private: pem }, null, 2)}\n`;
}

/**
 * A file that is not JSON is no key file. Said without the parser's message, which quotes the
 * file's first word: a passphrase file given by mistake would be printed.
 */
const notJson = (path: string) => new KeyFileError(path, "not JSON, so not a key file");

/**
 * Parses a key file's text.
 *
 * @throws {KeyFileError} If it is not a valid ed25519 key file or its key id does not match.
 */
export function parseKey(text: string, path = "key file"): TufKeyPair {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw notJson(path);
  }
  const d = data as { private?: unknown; keyid?: unknown; keyval?: { public?: unknown } };
  if (typeof d?.private !== "string")
    throw new KeyFileError(path, d?.keyval?.public !== undefined ? "it holds only a public key: give the private key file of the same key" : "no private key");
  let pair: TufKeyPair;
  try {
    pair = pairFromPrivate(createPrivateKey(d.private));
  } catch (cause) {
    throw new KeyFileError(path, "the private key is not a valid ed25519 PKCS#8 PEM", { cause });
  }
  if (d.keyid !== undefined && d.keyid !== pair.keyId) throw new KeyFileError(path, `key id ${String(d.keyid)} does not match the key (${pair.keyId})`);
  if (d.keyval?.public !== undefined && d.keyval.public !== pair.publicKey.keyval.public)
    throw new KeyFileError(path, "the public key does not match the private key");
  return pair;
}

/**
 * Writes a key file atomically and durably (lib/fs's writeFileAtomic), mode 0600.
 *
 * @example
 * ```ts
 * await saveKeyFile("/data/tuf/keys/root.json", generateKey());
 * ```
 */
export async function saveKeyFile(path: string, pair: TufKeyPair): Promise<void> {
  await writeFileAtomic(path, serializeKey(pair), { mode: 0o600 });
}

/**
 * Reads a key file.
 *
 * @throws {KeyFileError} If it cannot be read or parsed.
 */
export async function loadKeyFile(path: string): Promise<TufKeyPair> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    // In words, and without the errno as its cause: that was said after it ("EISDIR: EISDIR: illegal operation ...").
    throw new KeyFileError(path, fsWhy(cause), { code: (cause as NodeJS.ErrnoException).code });
  }
  return parseKey(text, path);
}

/** A public key with its TUF id: what a key holder shares, and what root.json lists. */
export type TufPublicKeyWithId = Pick<TufKeyPair, "keyId" | "publicKey">;

/** The public key file text for a key (`{keytype, scheme, keyval, keyid}`: no private part). */
export const serializePublicKey = (pair: TufPublicKeyWithId): string => `${JSON.stringify({ ...pair.publicKey, keyid: pair.keyId }, null, 2)}\n`;

/**
 * Reads the public key from a public key file or a private key file (its public part).
 *
 * @example
 * ```ts
 * parsePublicKey(serializePublicKey(generateKey())).keyId.length; // 64
 * ```
 * @throws {KeyFileError} If it holds no ed25519 public key, or its key id does not match it.
 */
export function parsePublicKey(text: string, path = "key file"): TufPublicKeyWithId {
  let d: { private?: unknown; keyid?: unknown; keytype?: unknown; scheme?: unknown; keyval?: { public?: unknown } };
  try {
    d = JSON.parse(text);
  } catch {
    throw notJson(path);
  }
  if (typeof d?.private === "string") {
    const pair = parseKey(text, path);
    return { keyId: pair.keyId, publicKey: pair.publicKey };
  }
  const hex = d?.keyval?.public;
  if (d?.keytype !== "ed25519" || d.scheme !== "ed25519" || typeof hex !== "string" || !/^[0-9a-f]{64}$/.test(hex))
    throw new KeyFileError(path, "not an ed25519 public key ({keytype, scheme, keyval: {public: <64 hex>}})");
  const publicKey: TufPublicKey = { keytype: "ed25519", scheme: "ed25519", keyval: { public: hex } };
  const keyId = keyIdOf(publicKey);
  if (d.keyid !== undefined && d.keyid !== keyId) throw new KeyFileError(path, `key id ${String(d.keyid)} does not match the key (${keyId})`);
  return { keyId, publicKey };
}
