/**
 * Proxy mode: a TLS-terminating proxy forwards the client certificate it
 * verified in a header. Two spellings exist in the proxies users run: nginx's
 * `$ssl_client_escaped_cert` (URL-encoded PEM) and HAProxy's
 * `%[ssl_c_der,base64]` (one line of base64 DER; HAProxy 2.6 has no PEM
 * fetch). Both are accepted. We still check it was issued by our device CA and
 * is in its validity period; results are cached by header value so a check-in
 * costs one map lookup.
 *
 * @module
 */
import type { PeerIdentity } from "../env.ts";
import type { CertificateAuthority } from "./ca.ts";
import { normalizeSerial } from "./keys.ts";
import { x509 } from "./x509.ts";

export class ForwardedCertVerifier {
  readonly #ca: CertificateAuthority;
  readonly #cache = new Map<string, { peer: PeerIdentity | undefined; notAfter: number }>();
  readonly #max: number;

  constructor(ca: CertificateAuthority, max = 100_000) {
    this.#ca = ca;
    this.#max = max;
  }

  /**
   * The cached verdict on a header value, without waiting: the identity, null for "not one of
   * ours", or undefined when there is no fresh verdict and {@link verify} must be asked.
   */
  cached(headerValue: string): PeerIdentity | null | undefined {
    const hit = this.#cache.get(headerValue);
    return hit && hit.notAfter > Date.now() ? (hit.peer ?? null) : undefined;
  }

  /** The identity in a forwarded certificate header, or undefined if it is not one of ours. */
  async verify(headerValue: string): Promise<PeerIdentity | undefined> {
    const known = this.cached(headerValue);
    if (known !== undefined) return known ?? undefined;
    const now = Date.now();
    let peer: PeerIdentity | undefined;
    let notAfter = now + 60_000;
    try {
      const cert = new x509.X509Certificate(certificateBytes(headerValue));
      const valid = cert.notBefore.getTime() <= now && cert.notAfter.getTime() > now;
      const signed = valid && (await cert.verify({ publicKey: this.#ca.cert.publicKey, signatureOnly: true }));
      const cn = cert.subjectName.getField("CN")[0];
      if (signed && cn && cert.issuer === this.#ca.cert.subject) {
        peer = { cn, serial: normalizeSerial(cert.serialNumber) };
        notAfter = Math.min(cert.notAfter.getTime(), now + 3_600_000);
      }
    } catch {
      peer = undefined;
    }
    if (this.#cache.size >= this.#max) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(headerValue, { peer, notAfter });
    return peer;
  }
}

/** The certificate in a forwarded header: URL-encoded PEM (nginx) or base64 DER (HAProxy). */
export function certificateBytes(headerValue: string): string | Buffer {
  const v = headerValue.trim();
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(v)) return Buffer.from(v, "base64");
  return decodeURIComponent(v.replace(/\+/g, " ")).replace(/\t/g, "\n");
}
