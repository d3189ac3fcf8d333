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
 * Also the one list of the error codes that mean the network failed ({@link isLinkFailure}): what
 * fioup retries soon, what the gateway CLI exits 4 on and what makes a TUF metadata error a fetch
 * failure are the same codes, and the words netWhy says for them sit beside them.
 *
 * @module
 */

const REFUSED = "connection refused (is it running at that address?)";
const CLOSED = "the connection was closed before an answer came";
const NO_ANSWER = "no answer in time";

/**
 * The codes of a connection that failed or was cut before an answer came (Node's names and
 * Bun's), with netWhy's words for each; undefined: the error's own message says it.
 */
const LINK_FAILURES = new Map<string, string | undefined>([
  ["ECONNREFUSED", REFUSED],
  ["ConnectionRefused", REFUSED],
  ["FailedToOpenSocket", undefined],
  ["ECONNRESET", CLOSED],
  ["ConnectionClosed", CLOSED],
  ["ETIMEDOUT", NO_ANSWER],
  ["EPIPE", undefined],
  ["ENETUNREACH", undefined],
  ["EHOSTUNREACH", undefined],
  ["ENOTFOUND", "no such host"],
  ["EAI_AGAIN", undefined],
]);

/** The codes {@link isLinkFailure} counts, for a caller that looks for them in text (a wrapped error's message). */
export const LINK_FAILURE_CODES: ReadonlySet<string> = new Set(LINK_FAILURES.keys());

/**
 * True when `err` itself (not its causes) is the network's failure: a connection refused, not
 * opened, cut or timed out, a host not found, or a request with no answer in time (TimeoutError).
 *
 * @example
 * ```ts
 * const refused = await fetch("http://127.0.0.1:1/").catch((e) => e);
 * isLinkFailure(refused); // true (ECONNREFUSED)
 * ```
 */
export function isLinkFailure(err: unknown): boolean {
  const { code, name } = (err ?? {}) as { code?: unknown; name?: unknown };
  return (typeof code === "string" && LINK_FAILURES.has(code)) || name === "TimeoutError";
}

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
  const linkWords = typeof e?.code === "string" ? LINK_FAILURES.get(e.code) : undefined;
  if (linkWords) return linkWords;
  switch (e?.code) {
    case "CERT_NOT_YET_VALID":
      return `the server's certificate is not valid yet by this machine's clock, which reads ${clockReading()}: the clock is likely wrong (a device without a battery-backed clock starts in 1970 until NTP sets it); ${SET_THE_CLOCK} and try again`;
    case "CERT_HAS_EXPIRED":
      return `the server's certificate has expired by this machine's clock, which reads ${clockReading()}: if that is not the time, ${SET_THE_CLOCK} and try again; if it is, the server's certificate must be renewed`;
    case "ERR_TLS_CERT_ALTNAME_INVALID":
      return "the server's certificate does not name the host in that URL: connect with a host name or address the certificate was made for";
  }
  if (e?.name === "TimeoutError") return NO_ANSWER;
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
