/**
 * URL pieces the transport needs: the path and query of a request's URL, cut out without a `URL`
 * object (the device routes and the plain listener's admission read them on every request; the
 * path is left as sent, not percent-decoded: callers that route on it decide what a `%` means),
 * and a listen address as a URL writes it.
 *
 * @module
 */

/**
 * A host as it goes into a URL or a "host:port": an IPv6 address in brackets.
 *
 * @example
 * ```ts
 * urlHost("::1"); // "[::1]"
 * urlHost("127.0.0.1"); // "127.0.0.1"
 * ```
 */
export const urlHost = (host: string): string => (host.includes(":") ? `[${host}]` : host);

/** A request URL's path (as sent, "/" without one) and query ("" without one); the URL may also be a target alone ("/path?query"). */
export function urlTarget(url: string): { path: string; query: string } {
  const start = url.charCodeAt(0) === 47 /* / */ ? 0 : url.indexOf("/", url.indexOf("://") + 3);
  if (start < 0) return { path: "/", query: "" };
  const q = url.indexOf("?", start);
  return q < 0 ? { path: url.slice(start), query: "" } : { path: url.slice(start, q), query: url.slice(q + 1) };
}
