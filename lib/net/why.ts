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

/**
 * True for the answers a load balancer or reverse proxy gives when no server is up behind it
 * (502 Bad Gateway, 503 Service Unavailable, 504 Gateway Timeout): the server is out of reach
 * for now, as after a dropped connection, and asking again soon is right. A 500 or 501 comes
 * from the server itself: it is up and failing, and asking again at once only adds load.
 */
export function proxyWithoutBackend(status: number): boolean {
  return status >= 502 && status <= 504;
}
