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
 * A proxy set up wrong fails every device the same way, with a 401 that says nothing of the
 * proxy: a certificate in a header other than `--client-cert-header`, or one this CA did not
 * issue (HAProxy's `ssl_c_der` of another CA, a PEM mangled on the way). So the first of each
 * kind is logged once (a misnamed header once per name), naming the header to give or why the
 * certificate was refused. So is a header sent to the TLS port from a trusted address without a
 * proxy certificate (gateway/transport/listen.ts), once per address.
 *
 * A result is cached for a duration (a refusal a minute, an identity an hour), measured on the
 * monotonic clock: on the wall clock a replica whose time stepped back an hour kept a refusal for
 * an hour and an identity for two. The certificate's end of validity is wall time, checked again
 * at each hit, so a forward step still ends an identity whose certificate has expired by then.
 *
 * @module
 */
import { X509Certificate } from "node:crypto";
import type { PeerIdentity } from "../env.ts";
import type { CertificateAuthority } from "./ca.ts";
import { deviceIdentity } from "./keys.ts";
import { printable } from "../../lib/cli/printable.ts";

/** The most addresses of a --trust-proxy CIDR told one by one that they presented no proxy certificate. */
const MAX_ADDRESS_LINES = 100;

/** Headers TLS-terminating proxies are commonly set up to forward the client certificate in. */
const COMMON_CERT_HEADERS = ["x-ssl-client-cert", "x-client-cert", "ssl-client-cert", "x-ssl-cert", "x-forwarded-client-cert", "x-client-certificate", "x-arr-clientcert"];

export class ForwardedCertVerifier {
  /** The factory CA in node:crypto's form. */
  readonly #ca: X509Certificate;
  /** By header value: the identity (none: refused), until when it is kept (the cache's monotonic clock) and the certificate's notAfter (wall ms). */
  readonly #cache = new Map<string, { peer: PeerIdentity | undefined; until: number; notAfter: number }>();
  readonly #max: number;
  readonly #now: () => number;
  readonly #warn: (line: string) => void;
  /** What was logged already: one line per kind of mistake (module comment). */
  readonly #warned = new Set<string>();
  /** Addresses told they presented no proxy certificate. */
  #addressLines = 0;

  /** `now` is the cache's clock and must not go back (the default is monotonic; a test gives its own). */
  constructor(ca: CertificateAuthority, opts: { max?: number; warn?: (line: string) => void; now?: () => number } = {}) {
    this.#ca = new X509Certificate(ca.certPem);
    this.#max = opts.max ?? 100_000;
    this.#now = opts.now ?? (() => performance.now());
    this.#warn = opts.warn ?? ((line) => console.error(line));
  }

  #once(kind: string, line: string): void {
    if (this.#warned.has(kind)) return;
    this.#warned.add(kind);
    this.#warn(line);
  }

  /**
   * A request came to the TLS port from `address`, a trusted proxy's, with a certificate in
   * `header` but no proxy certificate on its connection (listen.ts): the header is not believed.
   * Said once per address (up to
   * {@link MAX_ADDRESS_LINES} of them), with what to do: a proxy that terminates TLS needs a
   * proxy certificate; one that passes TLS through needs no --trust-proxy.
   */
  noProxyCertificate(address: string, header: string): void {
    if (this.#warned.has(`no-proxy-cert ${address}`) || this.#addressLines >= MAX_ADDRESS_LINES) return;
    this.#addressLines++;
    this.#once(
      `no-proxy-cert ${address}`,
      `gateway: a request came to the TLS port from ${address}, a --trust-proxy address, with ${header} but without a proxy certificate on its connection: ${header} is not believed from it, and its requests count as its own (a device behind it gets 401). ` +
        `A proxy that terminates TLS must present one: issue it with \`gateway proxy-cert --data DIR --name NAME --out DIR\` and give it to the proxy (HAProxy: crt on the server line; nginx: proxy_ssl_certificate and proxy_ssl_certificate_key), as gateway/README.md says under "Behind a proxy". ` +
        `A proxy that passes TLS through (TCP mode) needs no --trust-proxy: take ${address} out of it` +
        (this.#addressLines === MAX_ADDRESS_LINES ? ` (said for ${MAX_ADDRESS_LINES} addresses; further ones are not listed)` : ""),
    );
  }

  /**
   * The proxy certificate `name` presented from `address`, a trusted proxy's, failed the TLS
   * port's verification (`why`: expired, another CA's): the proxy's header is not believed. Said
   * once per address, within the same {@link MAX_ADDRESS_LINES} as noProxyCertificate: the name
   * comes from a certificate nobody vouched for, so a client could make up a new one for every
   * connection, and a line (and a remembered key) per name would grow without end. The name is
   * shown cut to 64 characters, printable only.
   */
  proxyCertRefused(address: string, name: string, why: string): void {
    if (this.#warned.has(`proxy-cert-refused ${address}`) || this.#addressLines >= MAX_ADDRESS_LINES) return;
    this.#addressLines++;
    const shown = printable(name).slice(0, 64);
    this.#once(
      `proxy-cert-refused ${address}`,
      `gateway: the proxy certificate "${shown}" the proxy at ${address} presented on the TLS port did not verify (${why}): its forwarded certificate header is not believed, and devices behind it get 401. ` +
        "Issue a new one from this gateway's data dir with `gateway proxy-cert --data DIR --name NAME --out DIR`, put it in the proxy's config and reload it (gateway/README.md, \"Behind a proxy\")",
    );
  }

  /**
   * For a request from a trusted proxy without `reading`, the header read: if it carries a
   * certificate in another common header, says which flag to give, once per such header (a
   * second proxy may be set up with another; the list is fixed, so the lines are few).
   */
  noticeAbsent(reading: string, get: (name: string) => string | null | undefined): void {
    for (const name of COMMON_CERT_HEADERS) {
      if (name === reading || this.#warned.has(`misnamed ${name}`) || get(name) == null) continue;
      this.#once(`misnamed ${name}`, `gateway: the proxy forwards a client certificate in ${name}, but this gateway reads ${reading}: its devices get 401. Give --client-cert-header ${name}`);
    }
  }

  /** The identity in a forwarded certificate header, or undefined if it is not one of ours. */
  async verify(headerValue: string): Promise<PeerIdentity | undefined> {
    const now = Date.now();
    const mono = this.#now();
    const hit = this.#cache.get(headerValue);
    if (hit && hit.until > mono && hit.notAfter > now) return hit.peer;
    let peer: PeerIdentity | undefined;
    let keepMs = 60_000;
    let notAfter = Infinity;
    let why: [kind: string, text: string] | undefined;
    try {
      const cert = new X509Certificate(certificateBytes(headerValue));
      const until = cert.validToDate.getTime();
      if (cert.validFromDate.getTime() > now || until <= now) why = ["validity", `it is outside its validity period (${cert.validFrom} to ${cert.validTo})`];
      else if (!cert.checkIssued(this.#ca) || !cert.verify(this.#ca.publicKey)) why = ["issuer", `it was not issued by this gateway's factory CA (its issuer: ${cert.issuer.replace(/\n/g, ", ")})`];
      else {
        const id = deviceIdentity(cert);
        if (id) {
          peer = id;
          keepMs = 3_600_000;
          notAfter = until;
        } else why = ["name", "it names no device (a proxy certificate, or not one CN)"];
      }
    } catch {
      why = ["format", "it is neither URL-encoded PEM (nginx) nor base64 DER (HAProxy)"];
    }
    if (why) this.#once(why[0], `gateway: refused a client certificate the proxy forwarded: ${why[1]}. The device gets 401 (said once)`);
    if (this.#cache.size >= this.#max) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(headerValue, { peer, until: mono + keepMs, notAfter });
    return peer;
  }
}

/** The certificate in a forwarded header: URL-encoded PEM (nginx) or base64 DER (HAProxy). */
export function certificateBytes(headerValue: string): string | Buffer {
  const v = headerValue.trim();
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(v)) return Buffer.from(v, "base64");
  return decodeURIComponent(v.replace(/\+/g, " ")).replace(/\t/g, "\n");
}
