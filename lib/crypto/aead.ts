/**
 * Authenticated encryption of small values with a key derived from a secret: AES-256-GCM with a
 * random 96-bit nonce, the key from HKDF-SHA256 so one secret serves several purposes without
 * one purpose's ciphertext opening under another's key. The sealed form is `nonce | ciphertext |
 * tag`. Used where a value must cross a party that may read but must not learn it (a session
 * cookie through the browser, a key through the shared database). Not for streams: backups seal
 * in records (gateway/backup/seal.ts).
 *
 * @module
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

const NONCE = 12;
const TAG = 16;

/** A 32-byte key for `purpose`, derived from `secret` (HKDF-SHA256, no salt: the secret is random or a private key). */
export function deriveKey(secret: Uint8Array | string, purpose: string): Buffer {
  return Buffer.from(hkdfSync("sha256", typeof secret === "string" ? Buffer.from(secret) : secret, Buffer.alloc(0), purpose, 32));
}

/** `plain` sealed under `key`; `aad` (optional) must be given again to open it. */
export function sealBytes(key: Uint8Array, plain: Uint8Array | string, aad?: string): Buffer {
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  if (aad !== undefined) cipher.setAAD(Buffer.from(aad));
  return Buffer.concat([nonce, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
}

/**
 * What {@link sealBytes} sealed.
 *
 * @throws {Error} If it was sealed under another key or aad, cut short or tampered with.
 */
export function openBytes(key: Uint8Array, sealed: Uint8Array, aad?: string): Buffer {
  if (sealed.length < NONCE + TAG) throw new Error("sealed value too short");
  const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, NONCE));
  if (aad !== undefined) decipher.setAAD(Buffer.from(aad));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG));
  return Buffer.concat([decipher.update(sealed.subarray(NONCE, sealed.length - TAG)), decipher.final()]);
}
