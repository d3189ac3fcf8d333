/**
 * PEM text for DER bytes and back: the form node:tls, the gateway data dir
 * and the device's sota dir keep keys and certificates in. And why a file
 * someone named as PEM is not ({@link whyNotPem}), one wording for every
 * binary, said before the file is used rather than as a TLS or parser error later.
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

/**
 * Why `text` is not the PEM it should be, or undefined when it holds a `-----BEGIN <label>-----`
 * line (`label` given: "CERTIFICATE") or any `-----BEGIN ` line (a key may be "PRIVATE KEY", "EC
 * PRIVATE KEY"...). What the block holds is the caller's to check; the caller names the file.
 *
 * @example
 * ```ts
 * whyNotPem("{}\n"); // "it holds no PEM (expected -----BEGIN ...)"
 * whyNotPem(certPem, "PRIVATE KEY"); // "it holds no PEM PRIVATE KEY (expected -----BEGIN PRIVATE KEY-----)"
 * ```
 */
export function whyNotPem(text: string, label?: string): string | undefined {
  const begin = label === undefined ? "-----BEGIN " : `-----BEGIN ${label}-----`;
  if (text.includes(begin)) return undefined;
  return label === undefined ? "it holds no PEM (expected -----BEGIN ...)" : `it holds no PEM ${label} (expected ${begin})`;
}
