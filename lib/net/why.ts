/**
 * Why a request did not reach a server, in words for a message ("Cannot GET URL: connection
 * refused (is it running at that address?)") rather than Bun's text ("ECONNREFUSED: Unable to
 * connect. Is the computer able to access the url?").
 *
 * A certificate "not yet valid" or "expired" is said against this machine's clock, with what it
 * reads: devices without a battery-backed clock start in 1970 (or at their build date) until NTP
 * sets the time, and then every TLS handshake fails; Bun's bare "certificate is not yet valid"
 * sent people looking at the server's certificates instead.
 *
 * @module
 */

/**
 * The reason behind a failed fetch or connect; any other error's own message.
 *
 * @example
 * ```ts
 * await fetch(url).catch((e) => { throw new Error(`Cannot GET ${url}: ${netWhy(e)}`); });
 * ```
 */
export function netWhy(err: unknown): string {
  const e = err as { code?: string; name?: string; message?: string };
  switch (e?.code) {
    case "ECONNREFUSED":
    case "ConnectionRefused":
      return "connection refused (is it running at that address?)";
    case "ENOTFOUND":
      return "no such host";
    case "ECONNRESET":
    case "ConnectionClosed":
      return "the connection was closed before an answer came";
    case "ETIMEDOUT":
      return "no answer in time";
    case "CERT_NOT_YET_VALID":
      return `the server's certificate is not valid yet by this machine's clock, which reads ${clockReading()}: the clock is likely wrong (a device without a battery-backed clock starts in 1970 until NTP sets it); ${SET_THE_CLOCK} and try again`;
    case "CERT_HAS_EXPIRED":
      return `the server's certificate has expired by this machine's clock, which reads ${clockReading()}: if that is not the time, ${SET_THE_CLOCK} and try again; if it is, the server's certificate must be renewed`;
    case "ERR_TLS_CERT_ALTNAME_INVALID":
      return "the server's certificate does not name the host in that URL: connect with a host name or address the certificate was made for";
  }
  if (e?.name === "TimeoutError") return "no answer in time";
  return e?.message ?? String(err);
}

/**
 * True when TLS refused the server's certificate as not valid yet or expired: by this machine's
 * clock, which is more often wrong than the certificate. Retrying within seconds cannot help
 * until the time is set, so a caller that retries may wait longer for it.
 */
export function isCertificateTimeError(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return code === "CERT_NOT_YET_VALID" || code === "CERT_HAS_EXPIRED";
}

/** What this machine's clock reads, to the second, for a message that may blame it. */
export function clockReading(now = new Date()): string {
  return now.toISOString().replace(/\.\d+Z$/, "Z");
}

/** The way forward when the clock is wrong. */
export const SET_THE_CLOCK = "set the time (enable NTP: timedatectl set-ntp true)";

/**
 * True for the answers a load balancer or reverse proxy gives when no server is up behind it
 * (502 Bad Gateway, 503 Service Unavailable, 504 Gateway Timeout): the server is out of reach
 * for now, as after a dropped connection, and asking again soon is right. A 500 or 501 comes
 * from the server itself: it is up and failing, and asking again at once only adds load.
 */
export function proxyWithoutBackend(status: number): boolean {
  return status >= 502 && status <= 504;
}
