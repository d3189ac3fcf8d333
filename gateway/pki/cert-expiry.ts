/**
 * The end of the TLS certificate the gateway serves, watched while it runs. Every device refuses
 * an expired certificate, so the day it ends the whole fleet loses its gateway at once, and no
 * device can be told anything until a person acts.
 *
 * The gateway's own certificate is renewed at start when less than a year of it is left
 * (./ca.ts SERVER_CERT_RENEW_DAYS, gateway/data-dir.ts), but not while the gateway runs:
 * Bun.listen cannot change the certificate of a listener (its `reload` takes new handlers, not
 * TLS options). A certificate given with --tls-cert is the operator's to renew. So the gateway
 * says it, in its log once a day from {@link WARN_DAYS} days before the end (and at start), with
 * what to do; /metrics shows the end as `gateway_tls_certificate_expiry_timestamp_seconds`, for
 * an alert that does not depend on anyone reading the log.
 *
 * The factory CA ends too (20 years after the first start, ./ca.ts CA_DAYS), and with it the
 * chain of every certificate it issued, the served one and every device's: nothing renews it, and
 * a restart only issues a certificate that ends with it. So its end is said the same way, from
 * the same {@link WARN_DAYS}, and shown as `gateway_ca_certificate_expiry_timestamp_seconds`.
 *
 * @module
 */

const DAY = 86_400_000;

/** From how many days before the end the log says it. */
export const WARN_DAYS = 30;

/** "expires at … (in N days)" or "expired at …" of an end within WARN_DAYS of `now`, else undefined. */
function nearEnd(notAfter: Date, now: number): { expired: boolean; when: string } | undefined {
  const left = notAfter.getTime() - now;
  if (left > WARN_DAYS * DAY) return undefined;
  const expired = left <= 0;
  return { expired, when: expired ? `expired at ${notAfter.toISOString()}` : `expires at ${notAfter.toISOString()} (in ${Math.ceil(left / DAY)} days)` };
}

/**
 * What the log says of a certificate ending at `notAfter`, or undefined while more than
 * WARN_DAYS are left. `own`: the gateway's own certificate (renewed by a restart), not --tls-cert.
 */
export function certificateExpiryWarning(notAfter: Date, own: boolean, now = Date.now()): string | undefined {
  const end = nearEnd(notAfter, now);
  if (!end) return undefined;
  const when = `${end.when}: ${end.expired ? "devices refuse it and cannot connect" : "devices cannot connect after that"}`;
  const todo = own
    ? "restart gateway serve, which issues a new one from the factory CA (devices trust it as they trust the old one)"
    : "put a renewed certificate in the --tls-cert and --tls-key files and restart gateway serve";
  return `gateway: warning: the gateway's TLS certificate ${when}; ${todo}`;
}

/** What the log says of the factory CA ending at `notAfter`, or undefined while more than WARN_DAYS are left. */
export function caExpiryWarning(notAfter: Date, now = Date.now()): string | undefined {
  const end = nearEnd(notAfter, now);
  if (!end) return undefined;
  return (
    `gateway: warning: the factory CA (pki/ca.pem) ${end.when}: from then every device refuses the gateway's certificate and the gateway every device's, ` +
    `and a restart does not help; nothing renews the CA: move the fleet to a gateway with a new one before then (docs/keys.md, "The factory CA")`
  );
}

/**
 * Says {@link certificateExpiryWarning} of the served certificate (`own`: see there) and
 * {@link caExpiryWarning} of the factory CA now and then every `everyMs`; returns the stop. A
 * served certificate that ends no earlier than the CA is said by the CA's line alone: renewing it
 * would not help.
 */
export function watchCertificateExpiry(
  ends: { served: Date; own: boolean; ca: Date },
  log: (line: string) => void,
  everyMs = DAY,
): () => void {
  const check = () => {
    const served = ends.served < ends.ca ? certificateExpiryWarning(ends.served, ends.own) : undefined;
    const ca = caExpiryWarning(ends.ca);
    for (const warning of [served, ca]) if (warning) log(warning);
  };
  check();
  const timer = setInterval(check, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
