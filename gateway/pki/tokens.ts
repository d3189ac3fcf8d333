/**
 * Tokens the gateway prints: `<secret>.<sha256 hex of the CA DER>`. The pin
 * lets a client given only a URL and a token trust the right CA; the gateway
 * itself stores only sha256(secret).
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";

export interface IssuedToken {
  token: string;
  secretHash: string;
}

export function newToken(caFingerprint: string): IssuedToken {
  const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
  return { token: `${secret}.${caFingerprint}`, secretHash: hashSecret(secret) };
}

export const hashSecret = (secret: string) => createHash("sha256").update(secret).digest("hex");

/** The secret part of a token (tolerates a token given without its pin). */
export const tokenSecret = (token: string) => token.split(".")[0] ?? "";

/** Constant-time comparison of two tokens' secret parts. */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(hashSecret(tokenSecret(a)), "hex");
  const y = Buffer.from(hashSecret(tokenSecret(b)), "hex");
  return timingSafeEqual(x, y);
}
