/**
 * Trust on first use, made safe by a pin: every token the gateway prints has
 * the form `<secret>.<sha256 hex of the CA certificate DER>`, so a client given
 * only a URL and a token fetches `/ca.pem` unverified, checks its fingerprint
 * against the pin, and from then on trusts that CA and nothing else. Used by
 * `gateway publish` and `fioup register`.
 *
 * @module
 */
import { X509Certificate } from "node:crypto";
import { netWhy, proxyWithoutBackend } from "../net/why.ts";

export class InvalidTokenError extends Error {
  override name = "InvalidTokenError";
}

export class CaPinMismatchError extends Error {
  override name = "CaPinMismatchError";
}

/** `/ca.pem` could not be fetched: the server did not answer (refused, timed out, TLS failed). */
export class CaFetchError extends Error {
  override name = "CaFetchError";
}

/**
 * The server answered, but not with a CA certificate at `/ca.pem` (an HTTP error, or a page that
 * is no PEM certificate): it is up, and not a gateway at that URL. Retrying will not help; a
 * different `--server` will.
 */
export class NotAGatewayError extends CaFetchError {
  override name = "NotAGatewayError";
}

/** A token split into its secret and its CA pin (lower-case hex). */
export interface PinnedToken {
  secret: string;
  pin: string;
}

/**
 * Splits `<secret>.<sha256 hex>` at the last dot.
 *
 * @example
 * ```ts
 * parsePinnedToken(`abc.${"0".repeat(64)}`).secret; // "abc"
 * ```
 * @throws {InvalidTokenError} If there is no 64-hex-digit pin after the last dot.
 */
export function parsePinnedToken(token: string): PinnedToken {
  const dot = token.lastIndexOf(".");
  const pin = dot < 0 ? "" : token.slice(dot + 1).toLowerCase();
  if (dot <= 0 || !/^[0-9a-f]{64}$/.test(pin)) {
    throw new InvalidTokenError("Invalid token: expected <secret>.<sha256 hex of the CA certificate>");
  }
  return { secret: token.slice(0, dot), pin };
}

/**
 * The pin of a CA certificate given as its DER bytes: their sha256 in hex. The one computation of
 * it: the gateway's CA (gateway/pki/ca.ts) is fingerprinted here too, so the pin a token carries
 * and the one a client checks cannot drift apart.
 */
export function derFingerprint(der: ArrayBuffer | Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(new Uint8Array(der)).digest("hex");
}

/** The pin of a PEM certificate ({@link derFingerprint} of its DER bytes). */
export function caFingerprint(pem: string): string {
  return derFingerprint(new X509Certificate(pem).raw);
}

/**
 * Fetches `<server>/ca.pem` without verifying TLS, checks its fingerprint
 * against the token's pin, and returns the PEM: the only trust anchor to use
 * for this server from now on (`fetch(url, {tls: {ca}})`).
 *
 * @example
 * ```ts
 * const ca = await fetchPinnedCa("https://127.0.0.1:8443", token);
 * await fetch("https://127.0.0.1:8443/admin/targets", { tls: { ca }, headers });
 * ```
 * @throws {InvalidTokenError} If the token has no pin.
 * @throws {CaFetchError} If the server does not answer, or a proxy answers 502-504 for it.
 * @throws {NotAGatewayError} If it answers `/ca.pem` with an HTTP error or with no PEM certificate.
 * @throws {CaPinMismatchError} If the certificate's fingerprint differs from the pin.
 */
export async function fetchPinnedCa(server: string, token: string, opts: { timeoutMs?: number } = {}): Promise<string> {
  const { pin } = parsePinnedToken(token);
  // Beside the server's other paths: a gateway behind a proxy under https://host/ota serves /ota/ca.pem.
  const url = `${server.replace(/\/+$/, "")}/ca.pem`;
  let pem: string;
  let status: number;
  try {
    const res = await fetch(url, {
      tls: { rejectUnauthorized: false },
      signal: AbortSignal.timeout(opts.timeoutMs ?? 15_000),
    });
    status = res.status;
    pem = await res.text();
  } catch (cause) {
    throw new CaFetchError(`Cannot fetch ${url}: ${netWhy(cause)}`);
  }
  const notGateway = (what: string) =>
    new NotAGatewayError(`${server} does not look like a gateway: ${url} answered ${what}; check the URL (a gateway serves its CA certificate there)`);
  // 502-504: a load balancer or proxy answers with no gateway up behind it (all replicas
  // restarting): the gateway is out of reach for now, not missing; worth trying again.
  if (proxyWithoutBackend(status))
    throw new CaFetchError(`Cannot fetch ${url}: it answered HTTP ${status}: a proxy in front with no gateway answering behind it? Try again once the gateway is up`);
  if (status < 200 || status > 299) throw notGateway(`HTTP ${status}`);
  let actual: string;
  try {
    // Only the first certificate counts: the pin names exactly one CA.
    const first = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem)?.[0];
    if (!first) throw notGateway("with no PEM certificate");
    pem = first + "\n";
    actual = caFingerprint(pem);
  } catch (cause) {
    if (cause instanceof NotAGatewayError) throw cause;
    throw new NotAGatewayError(`Cannot read the CA certificate from ${url}`, { cause });
  }
  if (actual !== pin) {
    throw new CaPinMismatchError(
      `CA certificate from ${url} does not match the token: fingerprint ${actual}, token pins ${pin}. ` +
        "The token was made by another gateway (or this URL names another one): give a token this gateway made, or the URL of the gateway that made the token",
    );
  }
  return pem;
}
