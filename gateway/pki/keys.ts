/**
 * ECDSA P-256 keys on WebCrypto, and the PEM forms node:tls and the data dir
 * use; certificate serials, and who a certificate names: a device, or a proxy.
 *
 * A proxy certificate (`gateway proxy-cert`, ca.ts issueProxyCert) is marked by its subject: an
 * O attribute {@link PROXY_ORGANIZATION}, which no device certificate has (signDeviceCsr writes
 * the subject CN=uuid, OU=factory whatever the CSR asks). The subject, not an extension: the TLS
 * handshake and a forwarded header both hand over node:crypto's X509Certificate, whose subject is
 * a string deviceIdentity already splits, so telling the two kinds apart costs nothing on a
 * device's handshake, where parsing an extended key usage would cost on every one. The same split
 * makes a proxy certificate never a device (deviceIdentity: null) and a device certificate never
 * a proxy (proxyName: null).
 *
 * @module
 */
import type { X509Certificate } from "node:crypto";
import { fromPem, toPem } from "../../lib/x509/pem.ts";

export const EC_ALG = { name: "ECDSA", namedCurve: "P-256" } as const;
export const SIGN_ALG = { name: "ECDSA", hash: "SHA-256" } as const;

export function generateKeyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(EC_ALG, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
}

/** PKCS#8 PEM ("PRIVATE KEY"), which node:tls accepts as `key`. */
export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  return toPem(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

export async function privateKeyFromPem(pem: string): Promise<CryptoKey> {
  return crypto.subtle.importKey("pkcs8", fromPem(pem, "PRIVATE KEY") as Uint8Array<ArrayBuffer>, EC_ALG, true, ["sign"]);
}

/** Normalised certificate serial: upper-case hex without leading zeros (as node:tls reports it). */
export const normalizeSerial = (hex: string) => hex.replace(/[^0-9a-fA-F]/g, "").toUpperCase().replace(/^0+(?=.)/, "");

/**
 * The device a certificate names, read from node:crypto's native X509Certificate (the form a TLS
 * socket hands over, and the cheap one to parse a forwarded certificate with): exactly one CN, as
 * a device certificate has, and its serial. Null for anything else. The certificate's issuer and
 * signature are the caller's to check.
 */
export function deviceIdentity(cert: X509Certificate): { cn: string; serial: string } | null {
  if (!cert.serialNumber) return null;
  // One line per attribute ("CN=...\nOU=main").
  const lines = cert.subject.split("\n");
  if (lines.includes(PROXY_SUBJECT_LINE)) return null;
  const cns = lines.filter((l) => l.startsWith("CN="));
  return cns.length === 1 ? { cn: cns[0]!.slice(3), serial: normalizeSerial(cert.serialNumber) } : null;
}

/** The subject attribute that marks a proxy certificate (module comment). */
export const PROXY_ORGANIZATION = "compose-ota proxy";
const PROXY_SUBJECT_LINE = `O=${PROXY_ORGANIZATION}`;

/**
 * The name of the proxy a proxy certificate was issued to (its CN), or null for any other
 * certificate, a device's too. Like deviceIdentity, the issuer and signature are the caller's to check.
 */
export function proxyName(cert: X509Certificate): string | null {
  const lines = cert.subject.split("\n");
  if (!lines.includes(PROXY_SUBJECT_LINE)) return null;
  const cns = lines.filter((l) => l.startsWith("CN="));
  return cns.length === 1 ? cns[0]!.slice(3) : null;
}

/** A random positive 128-bit serial whose first byte is never zero (no sign or padding ambiguity). */
export function randomSerial(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[0] = (b[0]! & 0x6f) | 0x10;
  return Buffer.from(b).toString("hex").toUpperCase();
}
