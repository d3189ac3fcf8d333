/**
 * Why a request did not reach a server, in words for a message ("Cannot GET URL: connection
 * refused (is it running at that address?)") rather than Bun's text ("ECONNREFUSED: Unable to
 * connect. Is the computer able to access the url?").
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
  }
  if (e?.name === "TimeoutError") return "no answer in time";
  return e?.message ?? String(err);
}
