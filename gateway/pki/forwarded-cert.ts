/**
 * Proxy mode: a TLS-terminating proxy forwards the client certificate it
 * verified in a header. Two spellings exist in the proxies users run: nginx's
 * `$ssl_client_escaped_cert` (URL-encoded PEM) and HAProxy's
 * `%[ssl_c_der,base64]` (one line of base64 DER; HAProxy 2.6 has no PEM
 * fetch). Both are accepted. We still check it was issued by our device CA and
 * is in its validity period; results are cached by header value so a check-in
 * costs one map lookup.
 *
 * A header not in the cache is read with node:crypto's native X509Certificate, not
 * @peculiar/x509: about 0.2 ms against 1.5 ms per certificate here, and every device pays it
 * once after a replica starts (10,000 devices: 2 s of CPU instead of 15 s). The checks are the
 * same: the CA's name as issuer (and its key identifier), its signature, the validity period, one
 * CN.
 *
 * @module
 */
import { X509Certificate } from "node:crypto";
import type { PeerIdentity } from "../env.ts";
import type { CertificateAuthority } from "./ca.ts";
import { deviceIdentity } from "./keys.ts";

export class ForwardedCertVerifier {
  /** The factory CA in node:crypto's form. */
  readonly #ca: X509Certificate;
  readonly #cache = new Map<string, { peer: PeerIdentity | undefined; notAfter: number }>();
  readonly #max: number;

  constructor(ca: CertificateAuthority, max = 100_000) {
    this.#ca = new X509Certificate(ca.certPem);
    this.#max = max;
  }

  /** The identity in a forwarded certificate header, or undefined if it is not one of ours. */
  async verify(headerValue: string): Promise<PeerIdentity | undefined> {
    const now = Date.now();
    const hit = this.#cache.get(headerValue);
    if (hit && hit.notAfter > now) return hit.peer;
    let peer: PeerIdentity | undefined;
    let notAfter = now + 60_000;
    try {
      const cert = new X509Certificate(certificateBytes(headerValue));
      const until = cert.validToDate.getTime();
      const valid = cert.validFromDate.getTime() <= now && until > now;
      const id = valid && cert.checkIssued(this.#ca) && cert.verify(this.#ca.publicKey) ? deviceIdentity(cert) : null;
      if (id) {
        peer = id;
        notAfter = Math.min(until, now + 3_600_000);
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
