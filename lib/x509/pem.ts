/**
 * PEM text for DER bytes and back: the form node:tls, the gateway data dir
 * and the device's sota dir keep keys and certificates in.
 *
 * @module
 */

/** DER bytes as a PEM block with 64-column base64. */
export function toPem(der: ArrayBuffer | Uint8Array, label: string): string {
  const b64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString("base64");
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)!.join("\n")}\n-----END ${label}-----\n`;
}

/** The DER bytes of the first `label` block. @throws {Error} If there is none. */
export function fromPem(pem: string, label: string): Uint8Array {
  const m = pem.match(new RegExp(`-----BEGIN ${label}-----([\\s\\S]+?)-----END ${label}-----`));
  if (!m) throw new Error(`Cannot read PEM: no ${label} block`);
  return new Uint8Array(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64"));
}
