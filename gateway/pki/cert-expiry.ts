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
 * @module
 */

const DAY = 86_400_000;

/** From how many days before the end the log says it. */
export const WARN_DAYS = 30;

/**
 * What the log says of a certificate ending at `notAfter`, or undefined while more than
 * WARN_DAYS are left. `own`: the gateway's own certificate (renewed by a restart), not --tls-cert.
 */
export function certificateExpiryWarning(notAfter: Date, own: boolean, now = Date.now()): string | undefined {
  const left = notAfter.getTime() - now;
  if (left > WARN_DAYS * DAY) return undefined;
  const when = left <= 0 ? `expired at ${notAfter.toISOString()}: devices refuse it and cannot connect` : `expires at ${notAfter.toISOString()} (in ${Math.ceil(left / DAY)} days): devices cannot connect after that`;
  const todo = own
    ? "restart gateway serve, which issues a new one from the factory CA (devices trust it as they trust the old one)"
    : "put a renewed certificate in the --tls-cert and --tls-key files and restart gateway serve";
  return `gateway: warning: the gateway's TLS certificate ${when}; ${todo}`;
}

/** Says {@link certificateExpiryWarning} now and then every `everyMs`; returns the stop. */
export function watchCertificateExpiry(notAfter: Date, own: boolean, log: (line: string) => void, everyMs = DAY): () => void {
  const check = () => {
    const warning = certificateExpiryWarning(notAfter, own);
    if (warning) log(warning);
  };
  check();
  const timer = setInterval(check, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
